"""LAC-GAN training on 2 CPU processes (gloo), as torchrun runs it: the same global batch gives one process's
losses and weights, a stop-and-resume is exact, the replicas stay identical, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lacgan import checkpoint as ckpt
from lacgan.config import preset
from lacgan.data import FaceData, resolve_fitted
from lacgan.distributed import Shard
from lacgan.networks import build_models
from lacgan.train import train
from ranks import run_ranks

TRAIN = dict(steps=4, batch_size=6, checkpoint_every=2, sample_every=4, log_every=1, pair_prob=0.5)


class StandInFeatures(nn.Module):
    """A labelled stand-in for dlib's face network in Eq. 4 (5 feature maps of a frozen random conv stack), so
    the identity term, whose faces all sit on rank 0 here, is part of the comparison without loading dlib."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in ((3, 4), (4, 4), (4, 8), (8, 8), (8, 8)))
        self.requires_grad_(False)

    def __call__(self, x):
        out = []
        for c in self.convs:
            x = torch.relu(c(x))
            out.append(x)
        return out


def _config(store):
    cfg = preset("smoke").replace(train=TRAIN, net={"output": "warp"}, loss={"lambda_pair": 1.0})
    data = FaceData.open(store, cfg.net.size, cfg.train.test_fold)
    return resolve_fitted(cfg, data), data


def _train(store, out, stop_after=None):
    """One process's (or one rank's) training run: (history, {param name: numpy}) of every network."""
    torch.set_num_threads(1)
    cfg, data = _config(store)
    models = build_models(cfg.net, cfg.train.seed)
    res = train(models, data, cfg, out, id_features=StandInFeatures(), stop_after=stop_after, progress=False)
    weights = {f"{n}.{k}": v.detach().numpy().copy() for n, m in models.named().items()
               for k, v in m.state_dict().items()}
    return res.history, weights


@pytest.fixture(scope="module")
def store(aligned_store):
    return aligned_store  # the tiny cohort: real sequences, so the paired targets are exercised too


@pytest.fixture(scope="module")
def one_process(store, tmp_path_factory):
    return _train(store, tmp_path_factory.mktemp("one") / "run")


def test_shard_rows_cover_the_batch_once():
    for n, world in ((6, 2), (7, 3), (16, 4), (5, 5)):
        rows = [Shard(r, world).rows(n) for r in range(world)]
        assert [i for s in rows for i in range(n)[s]] == list(range(n))
        assert max(s.stop - s.start for s in rows) - min(s.stop - s.start for s in rows) <= 1


def test_a_ranks_batch_is_its_rows_of_the_whole_batch(store):
    data = FaceData.open(store, 64, 3)
    whole = data.batch(5, 7, seed=1, flip=0.3, pair_prob=0.5)
    parts = [data.batch(5, 7, seed=1, flip=0.3, pair_prob=0.5, rows=Shard(r, 3).rows(7)) for r in range(3)]
    assert whole[5].any() and (~whole[5]).any()  # both paired and unpaired rows
    for k, x in enumerate(whole):
        assert np.array_equal(np.concatenate([p[k] for p in parts]), x), k


def _close_histories(a, b, rtol=1e-4, atol=1e-5):
    assert [h["step"] for h in a] == [h["step"] for h in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=rtol, abs=atol), (x["step"], k, x[k], y[k])


def test_two_processes_equal_one(store, one_process, tmp_path):
    hist1, w1 = one_process
    ranks = run_ranks(_train, 2, store, tmp_path / "run")
    (h0, w0), (h1, wr1) = ranks
    assert h0 == h1  # every rank computes the global losses
    _close_histories(h0, hist1)
    # Adam moves a parameter by up to lr per step whatever its gradient's size: where the gradient is float noise
    # by construction (conv biases feeding a batch norm) the two runs may move it in opposite directions. The
    # gradients themselves are compared tightly in the next test.
    bound = 2 * _config(store)[0].optim.lr * TRAIN["steps"]
    worst = max(float(np.abs(w0[k] - w1[k]).max()) for k in w1)
    assert worst <= bound, (worst, bound)
    median = float(np.median([np.abs(w0[k] - w1[k]).max() for k in w1]))
    assert median < 1e-5, median
    assert all(np.array_equal(w0[k], wr1[k]) for k in w0)  # the replicas are identical, not just close
    # rank 0 alone wrote: one stats line per step, one set of checkpoints
    lines = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")) == ["step-00000002",
                                                                                         "step-00000004"]
    saved = ckpt.load_checkpoint(tmp_path / "run", with_optim=False).models["G"]
    assert all(np.array_equal(saved[k].numpy(), w0[f"G.{k}"]) for k in saved)


def _gradients(store):
    """Every network's gradient, phase by phase, for step 0's batch, as train() computes and averages them."""
    from lacgan import distributed
    from lacgan.data import to_batch
    from lacgan.losses import LacganLoss
    from lacgan.train import OPTIMIZED

    torch.set_num_threads(1)
    shard, device = distributed.start("cpu")
    cfg, data = _config(store)
    tc = cfg.train
    rows = shard.rows(tc.batch_size) if shard.world > 1 else None
    models = build_models(cfg.net, cfg.train.seed)
    loss = LacganLoss(models, cfg.loss, StandInFeatures(), cfg.net)
    *arrays, partner, paired = data.batch(0, tc.batch_size, tc.seed, tc.target_flip, tc.pair_prob, rows)
    batch = to_batch(*arrays, cfg.net, device, partner, paired)
    batch.rows, batch.total = rows, tc.batch_size
    gen = loss.generate(batch)
    nets, out = models.named(), {}
    for phase in loss.phases():
        net = nets[OPTIMIZED[phase]]
        for m in nets.values():
            m.requires_grad_(m is net)
            m.zero_grad(set_to_none=True)
        total, _ = loss.phase(phase, batch, gen, torch.Generator().manual_seed(3))
        total.backward(retain_graph=True)
        distributed.average_gradients(net.parameters())
        out.update({f"{phase}:{k}": p.grad.numpy().copy() for k, p in net.named_parameters() if p.grad is not None})
    return out


def test_two_processes_average_to_one_process_gradients(store):
    one = _gradients(store)
    g0, g1 = run_ranks(_gradients, 2, store)
    assert one.keys() == g0.keys() and len(one) > 20
    assert all(np.array_equal(g0[k], g1[k]) for k in g0)
    scale = {}  # a phase's gradient scale: its largest entry (conv biases feeding a batch norm hold only noise)
    for k, g in one.items():
        scale[k.split(":")[0]] = max(scale.get(k.split(":")[0], 0.0), float(np.abs(g).max()))
    for k, g in one.items():
        err = float(np.abs(g0[k] - g).max())
        assert err <= 1e-4 * scale[k.split(":")[0]], (k, err, scale[k.split(":")[0]])


def test_two_process_resume_is_exact(store, tmp_path):
    whole, w_whole = run_ranks(_train, 2, store, tmp_path / "a")[0]
    first, _ = run_ranks(_train, 2, store, tmp_path / "b", 3)[0]
    second, w_second = run_ranks(_train, 2, store, tmp_path / "b")[0]
    assert [h["step"] for h in first] == [1, 2, 3] and [h["step"] for h in second] == [4]
    assert first + second == whole  # resumed from the stop's checkpoint: identical floats
    assert all(np.array_equal(w_whole[k], w_second[k]) for k in w_whole)


def test_ganimation_refuses_torchrun(store, tmp_path):
    assert run_ranks(_refuse, 2, store, tmp_path) == ["refused"] * 2


def _refuse(store, tmp_path):
    from lacgan.ganimation.config import preset as gan_preset
    from lacgan.run import train_model

    try:
        train_model(store, tmp_path / f"g{os.environ['RANK']}", gan_preset("smoke"), log=lambda _: None)
    except ValueError as e:
        assert "ganimation trains in one process" in str(e), e
        return "refused"
    raise AssertionError("GANimation trained under torchrun")


@pytest.mark.slow
def test_torchrun_cli(store, tmp_path):
    """The user's command: torchrun with 2 gloo processes on the real CLI."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "flows.cli", "train", "--store", str(store),
           "--out", str(tmp_path / "run"), "--preset", "smoke", "--steps", "2", "--batch-size", "4",
           "--identity", "none", "--progress", "off", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", LACGAN_DIST_TIMEOUT_S="120")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("done: step 2") == 1, out.stdout  # rank 0 alone reports
    assert "× 2 processes" in out.stdout
    assert ckpt.load_checkpoint(tmp_path / "run", with_optim=False).step == 2
