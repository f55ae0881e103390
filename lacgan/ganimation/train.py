"""The GANimation training loop: a function of built objects and a config; it owns optimizers, checkpoints, logs.

Each step: the step's batch and targets (`FaceData.batch`, a pure function of (seed, step)), mirrored faces and
the penalty's mixing weights drawn from (seed, step) too; the edited faces once (no grad); then a critic step on
"D", a second critic step on "D_gp" (as the reference), and on every `critic_steps`-th step a generator step on
"G". Both learning rates fall linearly to 0 over the last (1 − decay_from) of the steps.
Outputs in `out_dir`: config.json, stats.jsonl, checkpoints/ (lacgan.checkpoint, model kind "ganimation"),
samples/ (Fig. 3 / Fig. 5 grids, and attention-latest.png: edit | colour | mask). Resume is exact.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lacgan import stats
from lacgan.checkpoint import resume, save_checkpoint
from lacgan.compose import to_float
from lacgan.data import FaceData
from lacgan.device import pick_device
from lacgan.ganimation.config import GanimationConfig
from lacgan.ganimation.infer import generate, render
from lacgan.ganimation.losses import PHASES, STEPPED, Batch, GanimationLoss
from lacgan.ganimation.networks import Models
from lacgan.progress import progress as show_progress
from lacgan.samples import EXPRESSIONS, expression_targets, grid, save_png, write_samples
from lacgan.atomic import write_text
from lacgan.train import TrainResult, _check_finite, _report
from manifests.aus import AUS

AU_NAMES = [f"AU{a}" for a in AUS]  # per-AU terms are reported under these keys


def learning_rate(base: float, step: int, steps: int, decay_from: float) -> float:
    """`base` until step decay_from·steps, then linearly down to 0 at `steps` (0-based step)."""
    start = decay_from * steps
    if step < start or steps <= start:
        return base
    return base * max(0.0, (steps - step) / (steps - start))


def step_batch(data: FaceData, step: int, config: GanimationConfig, device) -> tuple[Batch, torch.Tensor]:
    """The batch of `step` on `device` and the gradient penalty's α (B, 1, 1, 1): a pure function of (seed, step)."""
    tc = config.train
    images, _, labels, targets, _, _ = data.batch(step, tc.batch_size, tc.seed, tc.target_flip)
    rng = np.random.default_rng([tc.seed, step, 2])
    if tc.hflip:  # BP4D's AUs are not lateralised: a mirrored face keeps its labels
        images = np.where((rng.random(len(images)) < 0.5)[:, None, None, None], images[:, :, ::-1], images)
    alpha = torch.from_numpy(rng.random(len(images), dtype=np.float32)).view(-1, 1, 1, 1).to(device)
    return Batch(images=to_float(torch.from_numpy(np.ascontiguousarray(images))).to(device),
                 labels=torch.from_numpy(np.asarray(labels, np.int64)).to(device),
                 targets=torch.from_numpy(np.asarray(targets, np.int64)).to(device)), alpha


def train(
    models: Models,  # built networks (lacgan.ganimation.networks.build_models)
    data: FaceData,  # training faces (lacgan.data.FaceData)
    config: GanimationConfig,  # full config
    out_dir,  # run directory: resumed when it holds a checkpoint
    *,
    device=None,  # torch device or name; default CUDA when present, else CPU
    stop_after: int | None = None,  # stop (with a checkpoint) after this many total steps; None = config steps
    progress: bool | str = True,  # lacgan.progress mode: True/"bar" a tqdm bar, "log" lines, False/"off" none
) -> TrainResult:
    tc, oc, out_dir = config.train, config.optim, Path(out_dir)
    device = device if isinstance(device, torch.device) else pick_device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "config.json", config.to_json())
    models.to(device).train()
    nets = models.named()
    base_lr = {"G": oc.lr_G, "D": oc.lr_D}
    optims = {"G": torch.optim.Adam(models.G.parameters(), lr=oc.lr_G, betas=oc.betas_G),
              "D": torch.optim.Adam(models.D.parameters(), lr=oc.lr_D, betas=oc.betas_D)}
    loss = GanimationLoss(models, config.loss)
    writer = stats.StatsWriter(out_dir / "stats.jsonl")

    start, last_ck = 0, None
    ck = resume(out_dir, config, nets, optims, map_location=device)
    if ck is not None:
        start, last_ck = ck.step, ck.path
        writer.truncate_after(start)

    end = min(tc.steps, stop_after) if stop_after is not None else tc.steps
    held = data.held_out(tc.sample_faces)
    result = TrainResult(start, checkpoint=last_ck)
    bar = show_progress(range(start, end), total=end, initial=start, desc="ganimation train", mode=progress)
    with stats.collecting(writer):
        for step in bar:
            t0 = time.perf_counter()
            for k, opt in optims.items():
                for group in opt.param_groups:
                    group["lr"] = learning_rate(base_lr[k], step, tc.steps, oc.decay_from)
            batch, alpha = step_batch(data, step, config, device)
            with torch.no_grad():
                fake = loss.fake(batch)
            done = step + 1
            row = {"step": done}
            for phase in PHASES if done % oc.critic_steps == 0 else PHASES[:-1]:
                net = STEPPED[phase]
                for name, m in nets.items():  # only the stepped network needs gradients
                    m.requires_grad_(name == net)
                optims[net].zero_grad(set_to_none=True)
                total, terms = loss.phase(phase, batch, fake, alpha)
                _check_finite(phase, total, terms, done, last_ck)
                total.backward()
                optims[net].step()
                row[phase] = float(total.detach())
                _report(phase, total, terms, AU_NAMES)
            stats.report("lr/G", optims["G"].param_groups[0]["lr"])
            stats.report("time/step_s", time.perf_counter() - t0)
            result.history.append(row)
            bar.set_postfix(D=f"{row['D']:.3f}", gp=f"{row['D_gp']:.3f}")
            if done % tc.log_every == 0 or done == end:
                writer.flush(done)
            if done % tc.sample_every == 0 or done == end:
                models.eval()
                _samples(models, held[0], held[1], out_dir / "samples", done, device)
                models.train()
            if done % tc.checkpoint_every == 0 or done == end:
                state = {k: o.state_dict() for k, o in optims.items()}
                state["rng"] = torch.get_rng_state()
                last_ck = save_checkpoint(out_dir, done, config, nets, state, keep=max(1, tc.keep_checkpoints))
            result.step, result.checkpoint = done, last_ck
    for m in nets.values():
        m.requires_grad_(True)
    return result


@torch.no_grad()
def attention_grid(models: Models, images: np.ndarray, device):
    """Per face and Fig. 5 expression: the edit, the colour image C and the mask A (white = source kept)."""
    n, k = len(images), len(EXPRESSIONS)
    x = to_float(torch.from_numpy(np.ascontiguousarray(images))).to(device)
    targets = torch.from_numpy(expression_targets(n).astype(np.int64)).to(device)
    cells = []
    for j in range(k):
        edited, colour, a = render(models, x, targets[:, j])
        cells += [edited, colour, a.expand(-1, 3, -1, -1) * 2 - 1]
    u8 = [((c.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy() for c in cells]
    captions = [f"{name} {part}" for name in EXPRESSIONS for part in ("edit", "colour", "mask")]
    return grid(images, np.stack(u8, axis=1), captions)


def _samples(models: Models, images, landmarks, out_dir: Path, step: int, device) -> None:
    write_samples(lambda im, lm, t: generate(models, im, t, device), images, landmarks, out_dir, step)
    img = attention_grid(models, images, device)
    save_png(img, out_dir / f"attention-step-{step:08d}.png")
    save_png(img, out_dir / "attention-latest.png")
