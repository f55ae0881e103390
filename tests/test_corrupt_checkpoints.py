"""Issue 12, first contact: a LAC-GAN or GANimation checkpoint damaged on disk (a truncated copy, garbage).

`lacgan edit` / `lacgan generate` stop with one line naming the file and what to do (exit 2, nothing written);
`lacgan train` on the run falls back to the newest good checkpoint, says so, moves the corrupt one aside intact,
and a re-run continues; with no good checkpoint it stops with one line and touches nothing.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from flows.cli import main
from lacgan import checkpoint as ckpt
from test_lacgan_helpers import make_store

STEP2, STEP4 = "step-00000002", "step-00000004"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("corrupt") / "aligned.zarr"
    make_store(path, n=16, size=64)
    return path


def _train(store, out, steps, model="lacgan", preset=()):
    return main(["train", "--model", model, *preset, "--store", str(store), "--out", str(out), "--steps", str(steps),
                 "--device", "cpu", "--identity", "none", "--no-progress"])


@pytest.fixture(scope="module", params=["lacgan", "ganimation"])
def two_checkpoints(request, store, tmp_path_factory):
    """A smoke run of each model with checkpoints at steps 2 and 4 (a run, then its resumption)."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    assert _train(store, out, 2, request.param, ("--preset", "smoke")) == 0
    assert _train(store, out, 4, request.param) == 0
    return out


@pytest.fixture
def run(two_checkpoints, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    return out


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage_without_recorded_digest(ck):
    """A checkpoint written before state.json recorded models_sha256, whose models file is garbage: the
    safetensors parser itself fails (SafetensorError, which is no ValueError)."""
    state = json.loads((ck / ckpt.STATE).read_text())
    state.pop("models_sha256")
    (ck / ckpt.STATE).write_text(json.dumps(state))
    (ck / ckpt.MODELS).write_bytes(b"\xff" * 64)


def _error_lines(err):
    return [ln for ln in err.splitlines() if ln.strip()]


@pytest.mark.parametrize("damage", ["truncated", "garbage-no-digest"])
def test_edit_and_generate_with_a_corrupt_models_file_end_in_one_line(run, store, tmp_path, capsys, damage):
    from pipeline_fixtures import make_store as make_pipeline_store
    from pipelines.plan import PlanConfig, build_plan

    ck = run / "checkpoints" / STEP4
    _truncate(ck / ckpt.MODELS) if damage == "truncated" else _garbage_without_recorded_digest(ck)
    png = tmp_path / "e.png"
    rc = main(["edit", "--checkpoint", str(run), "--store", str(store), "--rows", "0", "--target", "AU12=1",
               "--out", str(png), "--device", "cpu"])
    lines = _error_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and not png.exists()
    assert lines[0].startswith(f"lacgan edit: error: {ck / ckpt.MODELS}: corrupt")
    assert f"use an older checkpoint of the run ({STEP2} in {run / 'checkpoints'})" in lines[0]
    assert "Traceback" not in lines[0]

    pstore = make_pipeline_store(tmp_path, size=64)
    plan = build_plan(pstore, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=2, seed=1))
    out = tmp_path / "synthetic"
    rc = main(["generate", "--plan", str(plan), "--store", str(pstore), "--checkpoint", str(run), "--out", str(out),
               "--workers", "0", "--device", "cpu"])
    lines = _error_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"lacgan generate: error: {ck / ckpt.MODELS}: corrupt")
    assert not (out / "synthetic.zarr").exists()
    # the older checkpoint the message points at works
    rc = main(["edit", "--checkpoint", str(run / "checkpoints" / STEP2), "--store", str(store), "--rows", "0",
               "--target", "AU12=1", "--out", str(png), "--device", "cpu"])
    assert rc == 0 and png.exists()


@pytest.mark.parametrize("part", [ckpt.MODELS, ckpt.OPTIM])
def test_train_resumes_from_the_newest_good_checkpoint_and_says_so(run, store, capsys, caplog, part):
    bad = run / "checkpoints" / STEP4
    _truncate(bad / part)
    damaged = (bad / part).read_bytes()
    model = ckpt.model_kind(run)
    with caplog.at_level(logging.WARNING, logger="lacgan.checkpoint"):
        assert _train(store, run, 6, model) == 0
    warned = [r.getMessage() for r in caplog.records if r.name == "lacgan.checkpoint"]
    assert len(warned) == 1 and str(bad) in warned[0] and part in warned[0]
    assert str(run / "checkpoints" / STEP2) in warned[0] and "newest good checkpoint" in warned[0]
    assert f"resuming from {run / 'checkpoints' / STEP2}" in capsys.readouterr().out
    aside = run / "checkpoints" / f"{ckpt.CORRUPT_PREFIX}{STEP4}"
    assert (aside / part).read_bytes() == damaged  # moved aside as it was, not deleted
    good = ckpt.load_checkpoint(run)
    assert good.step == 6 and good.model == model
    assert (run / "checkpoints" / ckpt.LATEST).read_text().strip() == "step-00000006"
    caplog.clear()
    assert _train(store, run, 8, model) == 0  # a re-run continues from there, quietly
    assert ckpt.load_checkpoint(run).step == 8 and not caplog.records
    assert "resuming from" in capsys.readouterr().out


def test_train_with_no_good_checkpoint_stops_in_one_line_and_moves_nothing(run, store, capsys):
    for step in (STEP2, STEP4):
        _truncate(run / "checkpoints" / step / ckpt.MODELS)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert _train(store, run, 6, ckpt.model_kind(run)) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"lacgan train: error: {run / 'checkpoints'}: no good checkpoint")
    assert f"{STEP2}/{ckpt.MODELS}: corrupt" in lines[0] and f"{STEP4}/{ckpt.MODELS}: corrupt" in lines[0]
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before



def test_following_the_advice_for_a_run_with_one_corrupt_checkpoint(run, store, tmp_path, capsys, caplog):
    kind = ckpt.model_kind(run)
    shutil.rmtree(run / "checkpoints" / STEP2)
    only = run / "checkpoints" / STEP4
    _truncate(only / ckpt.MODELS)
    rc = main(["edit", "--checkpoint", str(run), "--store", str(store), "--rows", "0", "--target", "AU12=1",
               "--out", str(tmp_path / "e.png"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and f"the run has no other checkpoint: delete {only} and train again" in err
    shutil.rmtree(only)  # as told; `latest` still names it
    with caplog.at_level(logging.WARNING, logger="lacgan.checkpoint"):
        assert _train(store, run, 2, kind, ("--preset", "smoke")) == 0
    assert any("which is gone" in r.getMessage() for r in caplog.records)
    assert ckpt.load_checkpoint(run).step == 2 and "new run" in capsys.readouterr().out
