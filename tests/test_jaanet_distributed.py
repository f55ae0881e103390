"""JAA-Net under torchrun semantics: 2 CPU processes (gloo) train what one process trains, resume exactly, and only
rank 0 writes.

The processes are spawned here (tests/ranks.py: torch.multiprocessing, the environment torchrun would set) on a
tiny hand-made store; the last test runs the real CLI under the real torchrun. The global batch is 7, split 4 + 3: with unequal
shares a rank-local mean (of a loss term or a batch-norm statistic) no longer averages to the global one, so the
comparison with one process fails if any reduction is not global.

The learning rate is 1e-3, not the presets' 1e-2: at 1e-2 this tiny network on noise images amplifies float
rounding about a hundredfold per step (one process on 1 vs 2 threads already differs by 1e-3 after 4 steps), so
per-step agreement at 1e-4 would hold for a step or two only. At 1e-3, 2 processes and 1 agree to < 1e-5 over
the run, and a non-global reduction is off by far more than that from the first step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from detectors.jaanet.config import JaaNetConfig
from pipeline_fixtures import make_store
from ranks import run_ranks

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
CFG = JaaNetConfig(input_size=56, crop=48, unit=2, batch_size=7, epochs=2, lr=1e-3, lr_step=1, colour_jitter=0.2,
                   device="cpu")
STEPS = 2 * (32 // 7)  # 32 training frames (folds 1-2 of the store below): 4 steps per epoch
LOSS_KEYS = ("loss/total", "loss/au_softmax", "loss/au_dice", "loss/land", "loss/refine")


# ---- what the ranks run -----------------------------------------------------------------------------------
class _Interrupted(Exception):
    pass


def _train(store, out, cfg_json, stop_at_epoch=None) -> dict:
    """train_jaanet on this rank; `stop_at_epoch`: raise when that epoch begins (after rank 0 checkpointed the
    epochs before it), as if the job were killed there. Returns the summary, or "interrupted", and the files this
    rank opened for writing, renamed or removed in `out` (a Python audit hook)."""
    import detectors.jaanet.train as train

    writes = set()

    def audit(event, a):
        if (w := _written(event, a, str(out))) is not None:
            writes.add(w)

    sys.addaudithook(audit)
    if stop_at_epoch is not None:
        lr_at = train.lr_at

        def stopping(cfg, epoch):
            if epoch == stop_at_epoch:
                raise _Interrupted
            return lr_at(cfg, epoch)

        train.lr_at = stopping
    try:
        summary = train.train_jaanet(store, out, JaaNetConfig(**cfg_json), test_fold=3, progress="off")
    except _Interrupted:
        summary = "interrupted"
    return {"summary": summary, "writes": sorted(writes)}


def _written(event: str, args: tuple, under: str) -> str | None:
    """'open NAME' (for writing), 'os.rename TARGET' or 'os.remove NAME' for a file in `under`, else None.
    (torch.save and safetensors open files in C++, unseen; the rename of their temporary file is seen.)"""
    path = args[0] if args and isinstance(args[0], (str, Path)) else None
    if path is None or not str(path).startswith(under):
        return None
    if event == "open":
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR))
        return f"open {Path(path).name}" if writing else None
    if event == "os.rename":
        return f"os.rename {Path(args[1]).name}"
    return f"os.remove {Path(path).name}" if event == "os.remove" else None


def _losses_on_halves(logp, labels, weight, lm_pred, lm_true, d_o, refined, pre) -> dict:
    """Each loss on this rank's rows (4 + 3 of 7), its value and its gradient w.r.t. this rank's inputs."""
    from lacgan.distributed import start

    mine = start("cpu")[0].rows(len(logp))
    out = {}
    for name, fn, inputs in _loss_cases(logp, labels, weight, lm_pred, lm_true, d_o, refined, pre, mine):
        value = fn(*inputs)
        value.backward()
        out[name] = {"value": value.item(), "grad": inputs[0].grad.tolist()}
    return out


def _loss_cases(logp, labels, weight, lm_pred, lm_true, d_o, refined, pre, rows=slice(None)):
    from detectors.jaanet.losses import attention_refine_loss, au_dice_loss, au_softmax_loss, landmark_loss

    leaf = lambda x: torch.tensor(x)[rows].clone().requires_grad_(True)  # noqa: E731
    part = lambda x: torch.tensor(x)[rows]  # noqa: E731
    w = torch.tensor(weight)
    return [("softmax", au_softmax_loss, (leaf(logp), part(labels), w)),
            ("dice", au_dice_loss, (leaf(logp), part(labels), w)),
            ("land", landmark_loss, (leaf(lm_pred), part(lm_true), part(d_o))),
            ("refine", attention_refine_loss, (leaf(refined), part(pre)))]


# ---- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process, 2 processes uninterrupted, and 2 processes stopped after epoch 1 and resumed, of CFG."""
    tmp = tmp_path_factory.mktemp("jaanet_ddp")
    store = str(make_store(tmp, frames=8, size=32, jitter=0.02))
    cfg = asdict(CFG)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from detectors.jaanet.train import train_jaanet

        single = train_jaanet(store, tmp / "one", CFG, test_fold=3, progress="off")
    finally:
        torch.set_num_threads(threads)
    two = run_ranks(_train, WORLD, store, str(tmp / "two"), cfg)
    first = run_ranks(_train, WORLD, store, str(tmp / "resumed"), cfg, 1)
    again = run_ranks(_train, WORLD, store, str(tmp / "resumed"), cfg)
    return {"tmp": tmp, "single": single, "two": two, "first": first, "again": again}


def _stats(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "stats.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict:
    return load_file(str(out / "jaanet.safetensors"))


# ---- tests ------------------------------------------------------------------------------------------------
def test_each_loss_on_two_ranks_is_the_whole_batchs_loss(tmp_path):
    """Value: one process's on the whole batch, on both ranks; gradient: world × one process's on the rank's rows
    (the convention average_gradients completes). Unknown labels make the per-rank counts differ."""
    g = np.random.default_rng(0)
    p = g.uniform(0.05, 0.95, (7, 12)).astype(np.float32)
    labels = g.integers(0, 2, (7, 12))
    labels[g.random((7, 12)) < 0.3] = -1
    arrays = (np.stack([np.log(1 - p), np.log(p)], 1), labels, g.uniform(0.5, 2, 12).astype(np.float32),
              g.normal(0, 3, (7, 49, 2)).astype(np.float32), g.normal(0, 3, (7, 49, 2)).astype(np.float32),
              g.uniform(10, 20, 7).astype(np.float32), g.uniform(0.01, 0.99, (7, 12, 4, 4)).astype(np.float32),
              g.uniform(0, 1, (7, 12, 4, 4)).astype(np.float32))
    args = tuple(a.tolist() for a in arrays)
    ranks = run_ranks(_losses_on_halves, WORLD, *args)
    for name, fn, inputs in _loss_cases(*args):
        value = fn(*inputs)
        value.backward()
        full = inputs[0].grad.numpy()
        for rank, got in enumerate(ranks):
            rows = slice(0, 4) if rank == 0 else slice(4, 7)
            assert got[name]["value"] == pytest.approx(value.item(), rel=1e-5), (name, rank)
            np.testing.assert_allclose(np.array(got[name]["grad"]) / WORLD, full[rows], rtol=1e-5, atol=1e-8,
                                       err_msg=f"{name}, rank {rank}")


@pytest.mark.slow  # the `runs` fixture: four trainings, ~35 s on 2 cores
def test_two_processes_train_what_one_process_trains(runs):
    tmp = runs["tmp"]
    one, two = _stats(tmp / "one"), _stats(tmp / "two")
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1))
    for a, b in zip(one, two):
        for k in LOSS_KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-4), (a["step"], k)
    w1, w2 = _weights(tmp / "one"), _weights(tmp / "two")
    assert w1.keys() == w2.keys()
    for k in w1:
        # float sums in another order: up to 2.0e-4 apart (batch-norm running means) on an AMD EPYC machine,
        # under 1e-4 on the Intel machines before it
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=5e-4, msg=lambda m, k=k: f"{k}: {m}")
    assert any(not torch.equal(w2[k], w1[k]) for k in w1)  # two processes did run: float sums in another order
    s1, s2 = runs["single"], runs["two"][0]["summary"]
    assert s1["processes"] == 1 and s2["processes"] == 2
    assert s2["steps_per_epoch"] == s1["steps_per_epoch"] == 4 and s2["epochs_completed"] == 2
    assert "metrics" in s2["held_out"]
    assert runs["two"][1]["summary"]["held_out"] == {"note": "scored by rank 0, not rank 1"}


@pytest.mark.slow  # the `runs` fixture: four trainings, ~35 s on 2 cores
def test_stop_and_resume_on_two_processes_is_exact(runs):
    tmp = runs["tmp"]
    assert [r["summary"] for r in runs["first"]] == ["interrupted", "interrupted"]
    assert all(r["summary"]["epochs_completed"] == 2 for r in runs["again"])
    resumed, straight = _stats(tmp / "resumed"), _stats(tmp / "two")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))  # the unfinished epoch's lines redone once
    for a, b in zip(straight, resumed):
        assert {k: b[k] for k in LOSS_KEYS} == {k: a[k] for k in LOSS_KEYS}, a["step"]
    w_straight, w_resumed = _weights(tmp / "two"), _weights(tmp / "resumed")
    assert all(torch.equal(w_resumed[k], w_straight[k]) for k in w_straight)


@pytest.mark.slow  # the `runs` fixture: four trainings, ~35 s on 2 cores
def test_one_process_resume_is_exact_too(runs, monkeypatch):
    """The generator's state is in the checkpoint: before, a resumed run drew epoch 1's batches and crops again."""
    import detectors.jaanet.train as train

    tmp, lr_at = runs["tmp"], train.lr_at
    store, out = tmp / "aligned.zarr", tmp / "one-resumed"

    def stopping(cfg, epoch):
        if epoch == 1:
            raise _Interrupted
        return lr_at(cfg, epoch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixture's one-process run
    try:
        monkeypatch.setattr(train, "lr_at", stopping)
        with pytest.raises(_Interrupted):
            train.train_jaanet(store, out, CFG, test_fold=3, progress="off")
        monkeypatch.setattr(train, "lr_at", lr_at)
        train.train_jaanet(store, out, CFG, test_fold=3, progress="off")
    finally:
        torch.set_num_threads(threads)
    assert [{k: r[k] for k in LOSS_KEYS} for r in _stats(out)] == [{k: r[k] for k in LOSS_KEYS}
                                                                    for r in _stats(tmp / "one")]
    w, ref = _weights(out), _weights(tmp / "one")
    assert w.keys() == ref.keys() and all(torch.equal(w[k], ref[k]) for k in ref)


@pytest.mark.slow  # the `runs` fixture: four trainings, ~35 s on 2 cores
def test_only_rank_0_writes(runs):
    tmp = runs["tmp"]
    for run in ("two", "first", "again"):
        assert runs[run][1]["writes"] == [], run
    renamed = {w.split()[1] for w in runs["two"][0]["writes"] if w.startswith("os.rename")}
    assert renamed == {"checkpoint.pt", "jaanet.safetensors", "config.json", "train_cache.npy", "train_cache.json",
                       "progress.json"}  # every file but the statistics is written beside and renamed into place
    assert "open stats.jsonl" in runs["two"][0]["writes"]
    assert sorted(p.name for p in (tmp / "two").iterdir()) == sorted(p.name for p in (tmp / "one").iterdir())
    assert json.loads((tmp / "two" / "config.json").read_text())["summary"]["processes"] == 2


def test_a_batch_smaller_than_the_processes_is_an_error(tmp_path):
    store = str(make_store(tmp_path, frames=8, size=32))
    with pytest.raises(RuntimeError, match="batch_size 1 is smaller than the 2 processes"):
        run_ranks(_train, WORLD, store, str(tmp_path / "out"), asdict(replace(CFG, batch_size=1, epochs=1)))


def test_the_cli_under_torchrun(tmp_path):
    store = make_store(tmp_path, frames=8, size=32, jitter=0.02)
    config = tmp_path / "jaanet.json"
    config.write_text(json.dumps(asdict(replace(CFG, epochs=1))))
    out = tmp_path / "w"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LACGAN_DIST_TIMEOUT_S": "120",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(WORLD),
           "-m", "flows.cli", "detect", "train", "--detector", "jaanet", "--store", str(store), "--out", str(out),
           "--config", str(config), "--progress", "off"]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("jaanet: trained on 32 frames") == 1  # rank 0 reports; rank 1 is silent
    meta = json.loads((out / "config.json").read_text())
    assert meta["summary"]["processes"] == 2 and meta["summary"]["epochs_completed"] == 1
    assert len(_stats(out)) == 4 and (out / "jaanet.safetensors").exists()


def test_hogsvm_refuses_torchrun(tmp_path, monkeypatch, capsys):
    """Every rank would fit and write the same model: one line, exit 2, before any work."""
    from flows.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["detect", "train", "--detector", "hogsvm", "--store", str(tmp_path / "none.zarr"), "--out",
                 str(tmp_path / "h")]) == 2
    assert "hogsvm trains in one process; run it without torchrun" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()
