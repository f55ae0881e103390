"""The LAC-GAN training loop: a function of built objects and a config; it owns optimizers, checkpoints, logs.

Each step: draw the step's batch and target labels (a pure function of (seed, step)), run the 12 CARGs once,
then update D_z, D_local (+R), D_global and finally G (encoders + decoders), each with its own Adam.
Outputs in `out_dir`: config.json, stats.jsonl (keyed statistics), checkpoints/, samples/ (Fig. 3 / Fig. 5 grids).
A run resumes from `out_dir`'s latest checkpoint and then reproduces the uninterrupted run's losses exactly.

Under torchrun (lacgan.distributed) each rank holds its rows of every step's batch (`train.batch_size` stays the
global batch), the losses are reduced over the whole batch, and each network's gradients are averaged over the
ranks before its optimizer steps, so the ranks stay identical replicas and the losses equal one process's to
float tolerance. Rank 0 alone writes config.json, statistics, samples, checkpoints and the progress bar.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lacgan import distributed, stats
from lacgan.atomic import write_text
from lacgan.checkpoint import resume, save_checkpoint
from lacgan.config import LacganConfig
from lacgan.data import FaceData, to_batch
from lacgan.infer import generate
from lacgan.losses import FeatureFn, LacganLoss
from lacgan.networks import Models
from lacgan.progress import progress as show_progress
from lacgan.samples import write_samples

OPTIMIZED = {"D_z": "D_z", "D_lat": "D_lat", "D_local": "D_local", "D_global": "D_global", "G": "G"}  # phase -> net


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; training stopped, the last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int  # steps done
    history: list[dict] = field(default_factory=list)  # per step: {"step", phase totals, "pixel"}
    checkpoint: Path | None = None  # newest checkpoint written or resumed from


def train(
    models: Models,  # built networks (lacgan.networks.build_models)
    data: FaceData,  # training faces (lacgan.data.FaceData)
    config: LacganConfig,  # full config with the window resolved
    out_dir,  # run directory: resumed when it holds a checkpoint
    *,
    id_features: FeatureFn | None = None,  # frozen identity features for Eq. 4; None leaves the term out
    device=None,  # torch device or name; default CUDA when present, else CPU
    stop_after: int | None = None,  # stop (with a checkpoint) after this many total steps; None = config steps
    progress: bool | str = True,  # lacgan.progress mode: True/"bar" a tqdm bar, "log" lines, False/"off" none
) -> TrainResult:
    tc, out_dir = config.train, Path(out_dir)
    shard, device = distributed.start(device)  # torchrun's process group when launched by it, else one process
    if shard.world > tc.batch_size:
        raise ValueError(f"batch_size {tc.batch_size} is smaller than the {shard.world} processes sharing it")
    rows = shard.rows(tc.batch_size) if shard.world > 1 else None
    if shard.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "config.json", config.to_json())
    models.to(device).train()
    nets = models.named()
    ema = _ema_copy(models.G) if tc.ema_half_life > 0 else None
    saved = {**nets, tc.generator_weights: ema} if ema is not None else nets  # what checkpoints hold
    optims = {k: torch.optim.Adam(m.parameters(), lr=config.optim.lr, betas=config.optim.betas)
              for k, m in nets.items()}
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if use_amp else contextlib.nullcontext
    loss = LacganLoss(models, config.loss, id_features, config.net)
    phases = loss.phases()
    names = ["+".join(f"AU{a}" for a in g) for g in models.G.grouping.groups]
    writer = stats.StatsWriter(out_dir / "stats.jsonl" if shard.main else None)

    start, last_ck = 0, None
    with distributed.main_first():  # rank 0 may move corrupt checkpoints aside; the others then read the same one
        ck = resume(out_dir, config, saved, optims, map_location=device)
    if ck is not None:
        scaler.load_state_dict(ck.optim["scaler"])
        start, last_ck = ck.step, ck.path
        writer.truncate_after(start)

    end = min(tc.steps, stop_after) if stop_after is not None else tc.steps
    held = data.held_out(tc.sample_faces)
    shown = ema if ema is not None else models.G  # the generator inference will load
    edit_fn = lambda im, lm, t: generate(shown, config.net, im, lm, t, device, R=models.D_local)  # noqa: E731
    result = TrainResult(start, checkpoint=last_ck)
    bar = show_progress(range(start, end), total=end, initial=start, desc="lacgan train",
                        mode=progress if shard.main else False)
    with stats.collecting(writer):
        for step in bar:
            t0 = time.perf_counter()
            *arrays, partner, paired = data.batch(step, tc.batch_size, tc.seed, tc.target_flip, tc.pair_prob, rows,
                                               tc.pair_register)
            batch = to_batch(*arrays, config.net, device, partner, paired)
            batch.rows, batch.total = rows, tc.batch_size
            prior = torch.Generator().manual_seed(int(np.random.default_rng([tc.seed, step, 1]).integers(2**62)))
            with autocast():
                gen = loss.generate(batch)
            row = {"step": step + 1}
            for phase in phases:
                for name, m in nets.items():  # only the stepped network needs gradients
                    m.requires_grad_(name == OPTIMIZED[phase])
                optims[OPTIMIZED[phase]].zero_grad(set_to_none=True)
                with autocast():
                    total, terms = loss.phase(phase, batch, gen, prior)
                _check_finite(phase, total, terms, step + 1, last_ck)
                scaler.scale(total).backward()
                distributed.average_gradients(nets[OPTIMIZED[phase]].parameters())
                scaler.step(optims[OPTIMIZED[phase]])
                row[phase] = float(total.detach())
                _report(phase, total, terms, names)
                if phase == "G":
                    row["pixel"] = float(terms["pixel"].detach().mean())
            scaler.update()
            if ema is not None:
                update_ema(ema, models.G, ema_beta(tc.ema_half_life, step))
            stats.report("time/step_s", time.perf_counter() - t0)
            result.history.append(row)
            done = step + 1
            bar.set_postfix(G=f"{row['G']:.3f}", pix=f"{row['pixel']:.3f}", Dl=f"{row['D_local']:.3f}")
            if done % tc.log_every == 0 or done == end:
                writer.flush(done)
            if shard.main and (done % tc.sample_every == 0 or done == end):
                models.train(False)
                write_samples(edit_fn, held[0], held[1], out_dir / "samples", done)
                models.train(True)
            if shard.main and (done % tc.checkpoint_every == 0 or done == end):
                state = {k: o.state_dict() for k, o in optims.items()}
                state.update(scaler=scaler.state_dict(), rng=torch.get_rng_state())
                last_ck = save_checkpoint(out_dir, done, config, saved, state, keep=max(1, tc.keep_checkpoints))
            result.step, result.checkpoint = done, last_ck
    for m in nets.values():
        m.requires_grad_(True)
    distributed.barrier()  # every rank returns after rank 0's last checkpoint is on disk
    return result


def ema_beta(half_life: float, step: int) -> float:
    """The EMA's decay after step `step` (0-based): the older weights' share halves every `half_life` steps, and
    every `(step + 1) / 2` steps while fewer than 2·half_life steps are done, so the initial weights are forgotten."""
    return 0.5 ** (1.0 / min(half_life, (step + 1) / 2))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """ema ← beta·ema + (1 − beta)·model for parameters; buffers copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - beta)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _ema_copy(G: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(G).eval()
    ema.requires_grad_(False)
    return ema


def _report(phase: str, total: torch.Tensor, terms: dict, groups: list[str]) -> None:
    stats.report(f"loss/{phase}/total", total)
    for name, v in terms.items():
        v = v.detach()
        stats.report(f"loss/{phase}/{name}", v.mean())
        if v.ndim == 1 and len(v) == len(groups):
            for g, x in zip(groups, v):
                stats.report(f"loss/{phase}/{name}/{g}", x)


def _check_finite(phase: str, total: torch.Tensor, terms: dict, step: int, last_ck) -> None:
    if torch.isfinite(total).all():
        return
    bad = [n for n, v in terms.items() if not torch.isfinite(v).all()] or ["total"]
    keep = f"last good checkpoint: {last_ck}" if last_ck else "no checkpoint was written yet"
    raise NonFiniteLossError(f"loss {phase}/{bad[0]} is {float(total.detach())} at step {step}; training stopped ({keep})")


def losses_summary(history: list[dict]) -> dict[str, tuple[float, float]]:
    """{loss: (mean of its first 10 values, mean of its last 10)}: a compact loss-curve summary. A loss missing
    from some steps (GANimation's generator trains every n-th step) is summarised over the steps that have it."""
    keys = dict.fromkeys(k for h in history for k in h if k != "step")
    out = {}
    for k in keys:
        vals = [h[k] for h in history if k in h]
        head, tail = vals[:10], vals[-10:]
        if all(math.isfinite(v) for v in head + tail):
            out[k] = (float(np.mean(head)), float(np.mean(tail)))
    return out
