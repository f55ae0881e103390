"""The embedded cohort: layout, label files, determinism, resume, landmarks vs pixels, AU regions, statistics."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from lacgan.regions import au_centres
from manifests.aus import AUS, N_AUS
from manifests.cohort import (
    CohortConfig,
    CohortError,
    is_cohort,
    load_landmarks,
    render_face,
    subject_identity,
    write_cohort,
)
from manifests.cohort import labels as lab
from manifests.cohort.config import OCC_COLUMNS

TINY = dict(subjects=2, tasks=2, frames=5, size=64, seed=3, workers=1)


def _lum(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


# ---- layout and label files -------------------------------------------------------------------------------
def test_layout_names_and_frames(cohort_root):
    assert is_cohort(cohort_root)
    subjects = sorted(p.name for p in cohort_root.iterdir() if p.is_dir() and re.fullmatch(r"[FM]\d{3}", p.name))
    assert subjects == ["F001", "F002", "F003", "M001", "M002", "M003"]
    for s in subjects:
        assert sorted(p.name for p in (cohort_root / s).iterdir()) == ["T1", "T2"]
        for t in ("T1", "T2"):
            jpgs = sorted((cohort_root / s / t).iterdir())
            assert all(re.fullmatch(r"\d{4}\.jpg", p.name) for p in jpgs), jpgs[:3]
            numbers = np.array([int(p.stem) for p in jpgs])
            assert np.array_equal(numbers, numbers[0] + np.arange(len(numbers)))  # consecutive
            assert numbers[0] >= 100  # the coded segment starts mid-sequence, as in BP4D
            frames, points = load_landmarks(cohort_root, s, t)
            assert np.array_equal(frames, numbers)
            assert points.shape == (len(numbers), 68, 2) and points.dtype == np.float32
            assert (points > 0).all() and (points < 160).all()
            img = cv2.imread(str(jpgs[0]))
            assert img.shape == (160, 160, 3)


def test_au_occ_csv_convention(cohort_root):
    files = sorted((cohort_root / "AUCoding" / "AU_OCC").glob("*.csv"))
    assert len(files) == 12 and files[0].name == "F001_T1.csv"
    all_codes = []
    for path in files:
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        assert header[0] == "0" and [int(h) for h in header[1:]] == list(OCC_COLUMNS)
        assert set(AUS) <= set(OCC_COLUMNS) and len(OCC_COLUMNS) > N_AUS  # extra AU columns, as in BP4D
        table = np.array([[int(v) for v in line.split(",")] for line in lines[1:]])
        assert len(table) == 16  # the coded frames
        assert np.isin(table[:, 1:], (0, 1, 9)).all()
        subject, task = path.stem.split("_")
        image_frames = {int(p.stem) for p in (cohort_root / subject / task).glob("*.jpg")}
        coded = table[:, 0]
        assert set(coded) <= image_frames and len(image_frames) - len(coded) <= 4  # a few uncoded frames
        all_codes.append(table[:, [1 + OCC_COLUMNS.index(a) for a in AUS]])
    codes = np.concatenate(all_codes)
    assert (codes == 9).any() and (codes == 1).any() and (codes == 0).any()
    assert (codes == 9).mean() < 0.1


def test_cohort_json_records_config_and_statistics(cohort_root):
    info = json.loads((cohort_root / "cohort.json").read_text())
    assert info["config"]["seed"] == 7 and info["config"]["subjects"] == 6
    assert info["version"]
    st = info["statistics"]
    assert set(st["base_rates"]) == {f"AU{a}" for a in AUS}
    assert set(st["base_rates_per_task"]) == {"T1", "T2"}
    assert "P(AU12|AU6)" in st["cooccurrence"]


def test_is_cohort_false_for_other_folders(tmp_path):
    assert not is_cohort(tmp_path)
    (tmp_path / "cohort.json").write_text("{not json")
    assert not is_cohort(tmp_path)


def test_load_landmarks_errors_name_the_file(tmp_path):
    with pytest.raises(CohortError, match="F001_T1.npz"):
        load_landmarks(tmp_path, "F001", "T1")
    (tmp_path / "Landmarks68").mkdir()
    (tmp_path / "Landmarks68" / "F001_T1.npz").write_bytes(b"garbage")
    with pytest.raises(CohortError, match="F001_T1.npz.*unreadable"):
        load_landmarks(tmp_path, "F001", "T1")


def test_config_validation():
    with pytest.raises(ValueError, match="tasks"):
        CohortConfig(tasks=9)
    with pytest.raises(ValueError, match="size"):
        CohortConfig(size=8)


# ---- determinism and resume -------------------------------------------------------------------------------
def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _files(write_cohort(tmp_path / "a", CohortConfig(**TINY), progress=False))
    b = _files(write_cohort(tmp_path / "b", CohortConfig(**TINY), progress=False))
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name  # CSVs, landmark archives, JPEGs and cohort.json
    c = _files(write_cohort(tmp_path / "c", CohortConfig(**{**TINY, "seed": 4}), progress=False))
    assert a["AUCoding/AU_OCC/F001_T1.csv"] != c["AUCoding/AU_OCC/F001_T1.csv"]


def test_resume_skips_complete_sequences(tmp_path):
    root = write_cohort(tmp_path / "r", CohortConfig(**TINY), progress=False)
    before = _files(root)
    keep = root / "AUCoding" / "AU_OCC" / "M001_T2.csv"
    redo = root / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    keep_mtime = keep.stat().st_mtime_ns
    redo.unlink()  # as if interrupted before the sequence finished
    next(iter((root / "M001" / "T1").glob("*.jpg"))).unlink()  # and another one lost a frame
    (root / "cohort.json").unlink()
    from manifests.cohort.writer import write_cohort_timed

    _, written, _ = write_cohort_timed(root, CohortConfig(**TINY), progress=False)
    per_seq = len(load_landmarks(root, "F001", "T1")[0]) + len(load_landmarks(root, "M001", "T1")[0])
    assert written == per_seq  # exactly the two incomplete sequences were rendered again
    assert keep.stat().st_mtime_ns == keep_mtime
    assert _files(root) == before
    with pytest.raises(CohortError, match="other settings"):
        write_cohort(root, CohortConfig(**{**TINY, "frames": 6}), progress=False)


# ---- landmarks agree with the pixels and move with the AUs --------------------------------------------------
def test_landmarks_sit_on_drawn_features(cohort_root):
    img = cv2.imread(str(sorted((cohort_root / "M002" / "T2").glob("*.jpg"))[3]))[..., ::-1]
    frames, points = load_landmarks(cohort_root, "M002", "T2")
    lm = points[3]
    lum = _lum(img)

    def patch(p, r=1, how=np.mean):
        x, y = int(round(p[0])), int(round(p[1]))
        return how(lum[y - r : y + r + 1, x - r : x + r + 1])

    for eye in (slice(36, 42), slice(42, 48)):
        pupil = patch(lm[eye].mean(0), how=np.min)  # the darkest pixel next to the landmark eye centre
        skin = patch((lm[eye].mean(0) + lm[[2, 14][eye.start == 42]]) / 2, 2)  # cheek beside the eye
        assert pupil < 0.6 * skin
    mouth = img[int(round(lm[[51, 57], 1].mean())), int(round(lm[[51, 57], 0].mean()))].astype(int)
    cheek = img[int(round(lm[[3, 31], 1].mean())), int(round(lm[[3, 31], 0].mean()))].astype(int)
    assert mouth[0] - mouth[1] > cheek[0] - cheek[1]  # lips are redder than the skin next to them


# (AU, landmark, expected movement) in the frontal render: dy < 0 is up, dx measured away from the midline
MOVES = [
    (1, [21, 22], "up"), (2, [17, 26], "up"), (4, [21, 22], "down"), (6, [40, 41, 46, 47], "up"),
    (7, [40, 41, 46, 47], "up"), (10, [50, 51, 52], "up"), (12, [48, 54], "up"), (12, [48, 54], "out"),
    (14, [48, 54], "in"), (15, [48, 54], "down"), (17, [8, 57], "up"), (23, [48, 54], "in"), (24, [51], "down"),
]  # fmt: skip


@pytest.mark.parametrize("au,points,way", MOVES)
def test_landmarks_move_with_aus(au, points, way):
    ident = subject_identity(0, 1)
    on = np.zeros(N_AUS)
    on[AUS.index(au)] = 1
    _, off_lm = render_face(ident, np.zeros(N_AUS), size=256)
    _, on_lm = render_face(ident, on, size=256)
    d = on_lm[points] - off_lm[points]
    mid = off_lm[27:31, 0].mean()
    outward = d[:, 0] * np.sign(off_lm[points, 0] - mid)
    moved = {"up": -d[:, 1], "down": d[:, 1], "out": outward, "in": -outward}[way]
    assert (moved > 1.0).all(), (au, way, d)  # more than a pixel at 256 px


# ---- every AU changes its own region --------------------------------------------------------------------------
@pytest.mark.parametrize("au", AUS)
def test_au_change_is_inside_its_region(au):
    """Render off/on; most of the pixel change lies where the AU's attention map (JAA-Net rule) is > 0."""
    size = 256
    fractions = []
    for s in (0, 1, 2):
        ident = subject_identity(5, s)
        on = np.zeros(N_AUS)
        on[AUS.index(au)] = 1
        off_img, off_lm = render_face(ident, np.zeros(N_AUS), size=size)
        on_img, _ = render_face(ident, on, size=size)
        diff = np.abs(on_img.astype(np.float32) - off_img.astype(np.float32)).sum(-1)
        # JAA-Net radius: 0.14 of an aligned crop whose side is 2.9x the eye-to-mouth box (here ~ outer eye span)
        radius = 0.14 * 2.9 * np.linalg.norm(off_lm[45] - off_lm[36])
        centres = au_centres(off_lm, "wide")[AUS.index(au)]  # the wide rule's diamond, at this face's scale
        yy, xx = np.mgrid[0:size, 0:size]
        region = np.min([np.abs(xx - x) + np.abs(yy - y) for x, y in centres], axis=0) < radius
        assert diff[region].mean() > 4.0, f"AU{au} barely changes its region"
        fractions.append(diff[region].sum() / diff.sum())
    assert min(fractions) > 0.6, (au, fractions)


# ---- label statistics -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(11)
    codes, tasks = [], []
    for _ in range(60):
        effect = lab.subject_effects(rng)
        for t in range(8):
            _, present = lab.simulate_sequence(rng, effect, t, 120)
            codes.append(present.astype(np.int8))
            tasks.append(np.full(120, t))
    return np.concatenate(codes), np.concatenate(tasks)


def test_base_rates_near_bp4d(simulated):
    codes, _ = simulated
    rates = codes.mean(0)
    for au, r in zip(AUS, rates):
        assert abs(r - lab.TARGET_RATES[au]) < 0.06, (au, r)


def test_tasks_and_cooccurrences(simulated):
    codes, tasks = simulated
    col = {a: codes[:, AUS.index(a)] == 1 for a in AUS}
    rate = lambda a, t: col[a][tasks == t].mean()  # noqa: E731
    assert rate(12, 0) > 2 * rate(12, 1)  # T1 happiness smiles more than T2 sadness
    assert rate(2, 2) == max(rate(2, t) for t in range(8))  # surprise raises the outer brows most
    assert rate(15, 1) == max(rate(15, t) for t in range(8))  # sadness depresses the lip corners most
    for a, b in ((6, 12), (4, 7), (17, 24), (1, 2), (10, 12)):
        assert col[b][col[a]].mean() > col[b].mean() + 0.1, (a, b)  # P(b | a) well above P(b)


def test_labels_come_in_episodes(simulated):
    codes, tasks = simulated
    seq = codes.reshape(-1, 120, N_AUS)
    switches = (np.diff(seq, axis=1) != 0).mean()
    p = codes.mean(0)
    iid = (2 * p * (1 - p)).mean()  # switch rate if frames were independent
    assert switches < 0.3 * iid


# ---- command line -------------------------------------------------------------------------------------------
def test_cli_sheet(cohort_root, tmp_path):
    from flows.cli import main

    out = tmp_path / "sheet.png"
    assert main(["sheet", "--root", str(cohort_root), "--out", str(out), "--subjects", "1"]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > img.shape[0] > 100
    with pytest.raises(CohortError, match="cohort.json"):
        main(["sheet", "--root", str(tmp_path), "--out", str(out)])


def test_pose_and_framing_vary_between_frames(cohort_root):
    """Head pose, scale and position jitter: alignment has real work to do."""
    _, points = load_landmarks(cohort_root, "F002", "T1")
    eyes = np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1)], 1)  # (F, 2, 2)
    centre = eyes.mean(1)
    angle = np.degrees(np.arctan2(*(eyes[:, 1] - eyes[:, 0])[:, ::-1].T))
    span = np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1)
    assert centre.std(0).max() > 0.5  # pixels, at 160 px
    assert angle.std() > 0.5  # degrees of roll
    assert span.std() / span.mean() > 0.005  # scale
    others = [load_landmarks(cohort_root, s, "T2")[1][:, 36:48].mean(1).mean(0) for s in ("F001", "M001", "M003")]
    assert np.ptp(np.array(others), axis=0).max() > 2  # sequences are framed differently


def test_cli_cohort_prints_summary(tmp_path, capsys):
    from flows.cli import main

    args = ["cohort", "--out", str(tmp_path / "c"), "--subjects", "2", "--tasks", "1", "--frames", "3"]
    assert main(args + ["--size", "64", "--workers", "1", "--seed", "9"]) == 0
    out = capsys.readouterr().out
    assert "frames/s" in out and "AU12" in out
    assert is_cohort(tmp_path / "c") and len(list((tmp_path / "c" / "M001" / "T1").glob("*.jpg"))) >= 3


@pytest.mark.slow
def test_aus_are_learnable_from_aligned_crops():
    """HOG + linear SVM on 96-px aligned crops, trained on 12 people and tested on 4 others, beats the
    always-present baseline by >= 15 F1 points averaged over the 12 AUs (the bar later detectors must pass)."""
    from skimage.feature import hog
    from sklearn.metrics import f1_score
    from sklearn.svm import LinearSVC

    from manifests.cohort.geometry import sample_pose

    rng = np.random.default_rng(0)
    rates = np.array([lab.TARGET_RATES[a] for a in AUS])
    S = 96
    dst = np.float32([[0.32 * S, 0.38 * S], [0.68 * S, 0.38 * S], [0.5 * S, 0.74 * S]])
    feats, ys, people = [], [], []
    for person in range(16):
        ident = subject_identity(42, person)
        for _ in range(50):
            present = rng.random(N_AUS) < rates
            aus = np.where(present, rng.uniform(0.35, 1, N_AUS), 0)
            img, lm = render_face(ident, aus, sample_pose(rng), 192)
            img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
            src = np.float32([lm[36:42].mean(0), lm[42:48].mean(0), lm[[48, 54]].mean(0)])
            m, _ = cv2.estimateAffinePartial2D(src, dst)
            crop = cv2.cvtColor(cv2.warpAffine(img, m, (S, S)), cv2.COLOR_RGB2GRAY)
            feats.append(hog(crop, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)))
            ys.append(present)
            people.append(person)
    x, y, people = np.array(feats), np.array(ys), np.array(people)
    train, test = people < 12, people >= 12
    gaps = []
    for j in range(N_AUS):
        pred = LinearSVC(C=0.05, class_weight="balanced").fit(x[train], y[train, j]).predict(x[test])
        gaps.append(f1_score(y[test, j], pred) - f1_score(y[test, j], np.ones(test.sum())))
    assert np.mean(gaps) >= 0.15, np.round(gaps, 2)
