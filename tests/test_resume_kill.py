"""Kill-and-resume for real: `lacgan generate` in a child process (Dask LocalCluster, 2 workers) is SIGKILLed,
with its whole process group, after some shards are committed; re-running the same command finishes the job.
The result must equal an uninterrupted run byte for byte, with every frame exactly once.

The editor is the labelled TEST STAND-IN (tests/standin_editor.py) slowed to 0.4 s per batch, so the kill
lands mid-run; the real LAC-GAN Editor path is covered in test_generate.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline_fixtures import make_store
from pipelines import synth_store as ss
from pipelines.plan import PlanConfig, build_plan
from standin_editor import write_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARDS = 12


def command(plan, store, ckpt, out):
    return [sys.executable, "-m", "flows.cli", "generate", "--plan", str(plan), "--store", str(store),
            "--checkpoint", str(ckpt), "--out", str(out), "--workers", "2", "--frames-per-shard", "8",
            "--batch-size", "8", "--editor", "standin_editor:StandInEditor"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), e.get("PYTHONPATH", "")])
    e["OMP_NUM_THREADS"] = "1"
    return e


def done(out):
    return ss.done_shards(out, ss.shard_ranges(SHARDS * 8, 8))


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    store = make_store(tmp_path, frames=16, size=32)
    plan = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=16, seed=1))
    ckpt = write_checkpoint(tmp_path / "ckpt", 32, sleep=0.4)

    ref = subprocess.run(command(plan, store, ckpt, tmp_path / "ref"), env=env(), cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr[-2000:]

    out = tmp_path / "out"
    proc = subprocess.Popen(command(plan, store, ckpt, out), env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (out.exists() and len(done(out)) >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its Dask scheduler/nanny/worker processes
    proc.wait(timeout=30)
    first = done(out)
    assert 3 <= len(first) < SHARDS, f"kill landed after {len(first)} shards; the test needs a mid-run kill"

    again = subprocess.run(command(plan, store, ckpt, out), env=env(), cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{SHARDS - len(first)} generated now, {len(first)} were done" in again.stdout
    assert done(out) == set(range(SHARDS))
    man = ss.read_parts(out)
    assert man["plan_row"].tolist() == list(range(SHARDS * 8))  # every frame exactly once
    np.testing.assert_array_equal(ss.open_images(out)[:], ss.open_images(tmp_path / "ref")[:])
    assert man.drop(columns=["package_version"]).equals(ss.read_parts(tmp_path / "ref").drop(columns=["package_version"]))
