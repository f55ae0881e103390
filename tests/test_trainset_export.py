"""Training-set export: the manifest and its provenance, the BP4D-layout round trip through manifests.bp4d, JAA-Net's
list files, the standalone Dataset, refusing foreign folders and test-fold subjects, resuming after an interruption.

Synthetic frames come from `standin_editor.StandInEditor` (a labelled TEST STAND-IN with LAC-GAN's interface)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from detectors.jaanet.landmarks import to_49
from manifests.aligned import AlignedStore
from manifests.aus import AU_COLUMNS
from manifests.bp4d import read_bp4d
from manifests.folds import FoldLeakError
from pipeline_fixtures import make_store
from pipelines import generate as gen
from pipelines import synth_store as ss
from pipelines import trainset_export as te
from pipelines.plan import PlanConfig, build_plan
from pipelines.trainset import (TrainsetConfig, TrainsetError, generate_trainset, plan_trainset, source_extra,
                                synthetic_extra)
from pipelines.trainset_dataset import TrainsetDataset
from standin_editor import write_checkpoint

GEN = gen.GenerateConfig(frames_per_shard=8, workers=0, editor="standin_editor:StandInEditor")
CFG = te.ExportConfig(chunk=10)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    store = make_store(tmp, frames=8, size=32)
    plan = plan_trainset(store, tmp / "plan.parquet", TrainsetConfig(ratio=1.0, seed=3))
    ckpt = write_checkpoint(tmp / "ckpt", 32)
    generate_trainset(plan, store, ckpt, tmp / "synth", 3, GEN)
    te.export_trainset(store, tmp / "synth", tmp / "export", CFG)
    return store, tmp / "synth", tmp / "export", tmp


def test_manifest_rows_and_provenance(made):
    store, synth, out, _ = made
    rows = te.read_trainset(out)
    s = AlignedStore.open(store)
    real, syn = rows[rows.kind == "real"], rows[rows.kind == "synthetic"]
    assert len(real) == 32 and len(syn) == 32 and (rows["fold"] != 3).all()
    np.testing.assert_array_equal(real[list(AU_COLUMNS)].to_numpy(), s.labels()[real["source_row"]])
    man = ss.read_parts(synth)
    np.testing.assert_array_equal(syn["plan_row"], man["plan_row"])
    np.testing.assert_array_equal(syn[list(AU_COLUMNS)].to_numpy(), man[list(AU_COLUMNS)].to_numpy())
    assert (syn["checkpoint_sha256"] == man["checkpoint_sha256"][0]).all() and (real["checkpoint_sha256"] == "").all()
    assert set(syn["task"]) <= {"T101", "T102"} and set(real["task"]) <= {"T1", "T2"}
    g = zarr.open_group(str(out / te.STORE), mode="r")
    # exact pixels: real = aligned crops, synthetic = generated frames; synthetic landmarks = their sources'
    np.testing.assert_array_equal(g["images"][: len(real)], s.read(real["source_row"].to_numpy())[0])
    np.testing.assert_array_equal(g["images"][len(real):], ss.open_images(synth)[:])
    np.testing.assert_array_equal(g["landmarks"][len(real):], s.landmarks[:][syn["source_row"].to_numpy()])
    record = json.loads((out / te.MARK).read_text())
    assert record["complete"] and record["frames"] == {"real": 32, "synthetic": 32, "subjects": 4}
    assert [r["au"] for r in record["rates"]] == list(AU_COLUMNS)


def test_bp4d_layout_reingests_to_exactly_the_exported_labels(made):
    _, _, out, _ = made
    rows = te.read_trainset(out)
    back = read_bp4d(out / te.BP4D)
    assert len(back) == len(rows) and (back["status"] == "ok").all()
    key = ["subject", "task", "frame"]
    a = back.set_index(key).sort_index()
    b = rows.set_index(key).sort_index()
    assert a.index.equals(b.index)
    np.testing.assert_array_equal(a[list(AU_COLUMNS)].to_numpy(), b[list(AU_COLUMNS)].to_numpy())
    assert (back["image_path"].map(lambda p: f"{te.BP4D}/{p}").sort_values().to_numpy()
            == rows["image_path"].sort_values().to_numpy()).all()


def test_jaanet_lists_line_up(made):
    _, _, out, _ = made
    rows = te.read_trainset(out)
    prefix = out / te.JAANET / te.LIST
    paths = (prefix.parent / f"{te.LIST}_path.txt").read_text().splitlines()
    occ = np.loadtxt(f"{prefix}_AUoccur.txt", dtype=int)
    land = np.loadtxt(f"{prefix}_land.txt")
    bio = np.loadtxt(f"{prefix}_biocular.txt")
    assert len(paths) == len(occ) == len(land) == len(bio) == len(rows)
    assert paths == rows["image_path"].tolist() and all((out / p).is_file() for p in paths)
    np.testing.assert_array_equal(occ, rows[list(AU_COLUMNS)].to_numpy())
    lm = zarr.open_group(str(out / te.STORE), mode="r")["landmarks"][:]
    assert land.shape == (len(rows), 98)
    np.testing.assert_allclose(land.reshape(-1, 49, 2), to_49(lm), atol=1e-5)  # x1 y1 x2 y2 ... per line
    assert (bio > 0).all()


def test_dataset_yields_what_the_manifest_says(made):
    _, _, out, _ = made
    rows = te.read_trainset(out)
    images = zarr.open_group(str(out / te.STORE), mode="r")["images"]
    ds, files = TrainsetDataset(out), TrainsetDataset(out, source="files")
    assert len(ds) == len(rows) and len(TrainsetDataset(out, kinds=("synthetic",))) == 32
    for i in (0, 31, 32, len(rows) - 1):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and str(item["image"].dtype) == "torch.uint8"
        np.testing.assert_array_equal(item["image"].numpy().transpose(1, 2, 0), images[i])
        np.testing.assert_array_equal(item["labels"].numpy(), rows.loc[i, list(AU_COLUMNS)].to_numpy(np.int64))
        assert item["landmarks"].shape == (68, 2) and item["kind"] == rows.loc[i, "kind"]
        # the JPEG file is exactly this frame, JPEG-encoded
        np.testing.assert_array_equal(files[i]["image"].numpy().transpose(1, 2, 0), _jpeg_roundtrip(images[i]))
    batch = next(iter(__import__("torch").utils.data.DataLoader(ds, batch_size=5)))
    assert batch["image"].shape == (5, 3, 32, 32) and batch["labels"].shape == (5, 12)


def _jpeg_roundtrip(image: np.ndarray) -> np.ndarray:
    import io

    import cv2
    from PIL import Image

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return np.asarray(Image.open(io.BytesIO(buf.tobytes())).convert("RGB"))


def test_non_empty_foreign_folders_are_refused(made, tmp_path):
    store, synth, out, _ = made
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(te.ExportError, match="not empty and is not a previous export"):
        te.export_trainset(store, synth, tmp_path, CFG)
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(te.ExportError, match="export of other inputs"):
        te.export_trainset(store, synth, out, te.ExportConfig(chunk=10, jpeg_quality=80))
    assert te.export_trainset(store, synth, out, CFG) == out / te.MANIFEST  # the same export: nothing to do


def test_interrupted_export_resumes(made, tmp_path, monkeypatch):
    store, synth, full, _ = made
    real_write, calls = te.write_jpeg, []

    def dying(path, image, quality):
        if len(calls) == 25:  # part-way through the third chunk of 10
            raise OSError("No space left on device")
        calls.append(path)
        real_write(path, image, quality)

    monkeypatch.setattr(te, "write_jpeg", dying)
    with pytest.raises(OSError):
        te.export_trainset(store, synth, tmp_path / "out", CFG)
    assert not (tmp_path / "out" / te.MANIFEST).exists()
    assert not json.loads((tmp_path / "out" / te.MARK).read_text())["complete"]
    monkeypatch.setattr(te, "write_jpeg", lambda *a: (calls.append(a[0]), real_write(*a)))
    calls.clear()
    te.export_trainset(store, synth, tmp_path / "out", CFG)
    assert len(calls) == 64 - 20  # the two finished chunks were not redone
    a, b = (zarr.open_group(str(p / te.STORE), mode="r") for p in (tmp_path / "out", full))
    np.testing.assert_array_equal(a["images"][:], b["images"][:])
    assert te.read_trainset(tmp_path / "out").equals(te.read_trainset(full))


def test_test_fold_subjects_never_reach_the_export_or_a_trainer(made):
    store, _, _, tmp = made
    leaky = build_plan(store, tmp / "leaky.parquet", PlanConfig(policy="balanced", count=4))  # every subject
    gen.generate(leaky, store, tmp / "ckpt", tmp / "leaky-synth", GEN)  # generation without the check
    with pytest.raises(FoldLeakError, match="test-fold subject (F003|M001)"):
        te.export_trainset(store, tmp / "leaky-synth", tmp / "leaky-export", CFG)
    assert not (tmp / "leaky-export").exists()
    for extra in (synthetic_extra, source_extra):  # the payoff's synthetic arm and its control
        with pytest.raises(FoldLeakError, match="test-fold subject"):
            extra(tmp / "leaky-synth", store, 3)


def test_the_extras_refuse_frames_generated_from_another_store(made, tmp_path):
    import shutil

    store, synth, _, _ = made
    other = shutil.copytree(store, tmp_path / "other.zarr")  # the same frames, another store
    for extra in (synthetic_extra, source_extra):
        assert len(extra(synth, store, 3).frames) == 32
        with pytest.raises(TrainsetError, match="generated from the aligned store"):
            extra(synth, other, 3)
