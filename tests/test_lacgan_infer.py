"""Inference API and CLI: load a run, edit deterministically, reject bad input clearly."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from lacgan import checkpoint as ckpt
from lacgan.config import config_hash, preset
from lacgan.data import FaceData, resolve_fitted
from lacgan.infer import Editor, edit
from lacgan.networks import build_models
from lacgan.train import train
from test_lacgan_helpers import faces, make_store


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    make_store(root / "aligned.zarr", n=16, size=64)
    data = FaceData.open(root / "aligned.zarr", 64, 3)
    steps = {"steps": 2, "checkpoint_every": 2, "sample_every": 100}
    # "residual" output: even 2 steps draw visible edits (the API tests below need a change to see)
    cfg = resolve_fitted(preset("smoke").replace(train=steps, net={"output": "residual"}), data)
    train(build_models(cfg.net), data, cfg, root / "run", progress=False)
    diff = resolve_fitted(preset("smoke").replace(train=steps), data)  # the demo's design: "difference"
    train(build_models(diff.net), data, diff, root / "difference", progress=False)
    return root


def test_editor_loads_run_dir_and_checkpoint_dir(run):
    ed = Editor.load(run / "run")
    ck = ckpt.find_checkpoint(run / "run")
    assert ed.size == 64 and ed.path == ck
    assert ed.checkpoint_sha256 == hashlib.sha256((ck / ckpt.MODELS).read_bytes()).hexdigest()
    assert ed.config_hash == config_hash(ed.config) and len(ed.config_hash) == 64
    assert Editor.load(ck).checkpoint_sha256 == ed.checkpoint_sha256


def test_edit_is_deterministic_and_local(run):
    imgs, lm, labels = faces(5, 64, seed=9)
    ed = Editor.load(run / "run", device="cpu")
    targets = np.ones((5, 12), np.int8)
    a = ed.edit(imgs, lm, targets, batch_size=2)
    b = edit(run / "run", imgs, lm, targets)
    assert a.dtype == np.uint8 and a.shape == imgs.shape and np.array_equal(a, b)
    assert not np.array_equal(a, imgs)
    same = ed.edit(imgs, lm, np.full((5, 12), -1, np.int8))  # nothing active: the input comes back
    assert np.array_equal(same, imgs)
    assert ed.edit(imgs[:0], lm[:0], targets[:0]).shape == (0, 64, 64, 3)


def test_difference_edit_to_the_sources_own_labels_is_the_source(run):
    """D(z, s) − D(z, s) = 0: asking for the AUs the source already has returns it bitwise; R's reading of the
    labels is used when they are not given, the same way."""
    imgs, lm, labels = faces(5, 64, seed=4)
    ed = Editor.load(run / "difference")
    assert ed.config.net.output == "difference"
    assert np.array_equal(ed.edit(imgs, lm, labels, source_labels=labels), imgs)
    assert np.array_equal(ed.edit(imgs, lm, np.full((5, 12), -1, np.int8)), imgs)
    with torch.no_grad():
        from lacgan.compose import Windows, gather_windows, to_float
        from lacgan.infer import estimate_labels

        win = Windows.from_landmarks(lm, 64, ed.G.window, ed.config.net.regions, ed.G.grouping.groups)
        read = estimate_labels(ed.R, ed.G, win.maps[:, :, None] * gather_windows(to_float(torch.from_numpy(imgs)),
                                                                                 win)).numpy().astype(np.int8)
    assert np.array_equal(ed.edit(imgs, lm, read), imgs)


@pytest.mark.parametrize("bad, match", [
    (dict(images=np.zeros((2, 64, 64, 3), np.float32)), "uint8"),
    (dict(images=np.zeros((2, 32, 32, 3), np.uint8)), r"\(n, 64, 64, 3\)"),
    (dict(landmarks=np.zeros((3, 68, 2), np.float32)), r"landmarks must be \(2, 68, 2\)"),
    (dict(targets=np.zeros((2, 11), np.int8)), r"\(2, 12\)"),
    (dict(targets=np.full((2, 12), 9, np.int8)), r"\{-1, 0, 1\}.*9"),
    (dict(targets=np.full((2, 12), 0.5)), "integers"),
    (dict(landmarks=np.full((2, 68, 2), np.nan, np.float32)), "NaN"),
])
def test_bad_inputs_are_refused(run, bad, match):
    imgs, lm, _ = faces(2, 64)
    args = dict(images=imgs, landmarks=lm, targets=np.zeros((2, 12), np.int8))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        Editor.load(run / "run").edit(args["images"], args["landmarks"], args["targets"])


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        Editor.load(tmp_path)


def test_cli_edit_writes_before_after_png(run, tmp_path, capsys):
    from PIL import Image

    from lacgan.cli import parse_target
    from flows.cli import main

    assert parse_target("AU12=1, au6=0").tolist() == [-1, -1, -1, 0, -1, -1, 1, -1, -1, -1, -1, -1]
    with pytest.raises(ValueError, match="AU5"):
        parse_target("AU5=1")
    with pytest.raises(ValueError, match="AU12=2"):
        parse_target("AU12=2")
    out = tmp_path / "e.png"
    rc = main(["edit", "--checkpoint", str(run / "run"), "--store", str(run / "aligned.zarr"), "--rows", "0,3",
               "--target", "AU12=1,AU6=1", "--out", str(out), "--device", "cpu"])
    assert rc == 0 and Image.open(out).size == (2 * 128, 14 + 2 * 128)  # 64-px faces shown at 128
    assert "AU6=1,AU12=1" in capsys.readouterr().out


def test_cli_train_resumes(run, tmp_path, capsys):
    from flows.cli import main

    base = ["train", "--store", str(run / "aligned.zarr"), "--out", str(tmp_path / "r"), "--device", "cpu",
            "--identity", "none", "--no-progress"]
    assert main(base + ["--preset", "smoke", "--steps", "2"]) == 0
    assert main(base + ["--steps", "3"]) == 0  # no --preset: the run's own config, resumed
    out = capsys.readouterr().out
    assert "resuming from" in out and "step 3" in out
    assert ckpt.load_checkpoint(tmp_path / "r").step == 3
    assert torch.load(ckpt.find_checkpoint(tmp_path / "r") / ckpt.OPTIM, weights_only=True)["G"]


def test_sample_grids_follow_the_paper_figures(run):
    from lacgan.samples import expression_targets, fig3, fig5, single_au_targets

    imgs, lm, _ = faces(2, 64)
    ed = Editor.load(run / "run")
    t3 = single_au_targets(2)
    assert t3.shape == (2, 24, 12) and (t3[:, 13, 6] == 1).all() and (t3[:, 12, 6] == 0).all()
    assert ((t3 >= 0).sum(-1) == 1).all()  # one AU per column, the rest left as the source
    t5 = expression_targets(2)
    assert t5[0, 0].tolist() == [0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0]  # happy: AU2, 6, 7, 12
    assert t5[0, 1].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0]  # angry: AU4, 23
    assert fig3(ed.edit, imgs, lm).size == (25 * 128, 14 + 2 * 128)
    assert fig5(ed.edit, imgs, lm).size == (3 * 128, 14 + 2 * 128)
