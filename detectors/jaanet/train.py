"""Training JAA-Net on the training folds of an aligned store; the held-out fold's F1 goes in the summary.

`train_jaanet(store, out_dir, PRESETS["cpu"], test_fold=3, minutes=None)` writes to `out_dir`:

    jaanet.safetensors   final weights (state_dict tensors)
    config.json          JaaNetConfig, AU weights, training summary, held-out metrics
    checkpoint.pt        resumable state (model + optimizer + epoch + the augmentation generator's state), loaded
                         with weights_only=True
    stats.jsonl          per step: the loss terms and the step time (lacgan.stats)
    train_cache.npy      training crops resized to the input size (a memmap, so BP4D need not fit in RAM)

Re-running the same command resumes at the last finished epoch and then draws exactly the batches, crops, mirrors
and colour jitter of an uninterrupted run (the generator's state is in the checkpoint).

Under torchrun (`lacgan.distributed`) every process draws each step's whole batch from the one seeded generator,
exactly as a single process does, and keeps its rows of it; the losses reduce over the whole batch
(detectors.jaanet.losses), batch norms use the whole batch's statistics, and gradients are averaged, so the run
equals one process's to float tolerance, with the config's `batch_size` as the global batch. Rank 0 alone writes
(cache, checkpoints, statistics, weights) and scores the held-out fold.

`extra=[ExtraFrames, ...]` (detectors.frames) adds frames, e.g. LAC-GAN's synthetic ones, to the training set
under the same budget: an epoch is still len(real training frames) // batch_size steps, drawn at random from the
real + extra frames, so a run with extra frames takes exactly as many optimizer steps, at the same learning
rates, as one without (each frame is then seen fewer times). The AU loss weights (1 / rate) are computed over
the frames actually trained on.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from detectors.jaanet import data
from detectors.jaanet.config import JaaNetConfig, lr_at
from detectors.jaanet.detector import JaaNetDetector, save_weights
from detectors.jaanet.landmarks import interocular, to_49
from detectors.jaanet.losses import (attention_refine_loss, au_dice_loss, au_softmax_loss, au_weights,
                                     landmark_loss)
from detectors.jaanet.model import JaaNet
from lacgan import stats
from lacgan.atomic import replacing, write_text
from lacgan.distributed import Shard, average_gradients, convert_batchnorm, global_count, main_first, start
from lacgan.progress import progress as show_progress
from manifests.aligned import AlignedStore


def training_layout(net: JaaNet, dev: torch.device) -> JaaNet:
    """The memory layout training uses: channels-last on the CPU, where oneDNN's backward pass for the grouped
    convolutions is faster that way (~20 % per step: `bench/bench_detectors.py --only training`); CUDA keeps
    PyTorch's default (not measured here)."""
    return net.to(memory_format=torch.channels_last) if dev.type == "cpu" else net


def build_optimizer(net: JaaNet, cfg: JaaNetConfig) -> torch.optim.SGD:
    refine = list(net.refine.parameters())
    ids = {id(p) for p in refine}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": rest, "lr_mult": 1.0}, {"params": refine, "lr_mult": cfg.refine_lr_mult}],
                           lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


def total_loss(out: dict, labels: torch.Tensor, lm49: torch.Tensor, d_o: torch.Tensor, w: torch.Tensor,
               cfg: JaaNetConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The JAA-Net objective on one batch and its terms for logging."""
    soft = au_softmax_loss(out["au_logp"], labels, w)
    dice = au_dice_loss(out["au_logp"], labels, w)
    land = landmark_loss(out["landmarks"], lm49, d_o)
    target = out["maps"][:, :, 4:-4, 4:-4]  # the predefined map over the refined map's pixels
    refine = attention_refine_loss(out["refined"], target)
    loss = (cfg.lambda_au * (soft + dice) + cfg.lambda_land * land
            + cfg.lambda_refine / cfg.refine_lr_mult * refine)
    return loss, {"au_softmax": soft.item(), "au_dice": dice.item(), "land": land.item(), "refine": refine.item()}


def _training_rows(store: AlignedStore, test_fold: int) -> np.ndarray:
    rows = store.ok_rows()
    rows = rows[store.folds()[rows] != test_fold]
    lm = store.landmarks.get_orthogonal_selection((rows, slice(None), slice(None)))
    rows = rows[np.isfinite(lm).all((1, 2))]
    if not len(rows):
        raise ValueError(f"{store.path}: no aligned rows with landmarks outside test fold {test_fold}")
    return rows


def _cache(store: AlignedStore, rows: np.ndarray, size: int, out_dir: Path, extra=(), progress="bar") -> np.ndarray:
    """Training images (store rows, then the extra frames) resized to `size`, as a .npy memmap in out_dir
    (rebuilt when rows/size/extra differ)."""
    path, key = out_dir / "train_cache.npy", out_dir / "train_cache.json"
    want = {"rows": int(len(rows)), "first": int(rows[0]), "last": int(rows[-1]), "size": size,
            "store": str(store.path), "extra": [[e.frames.name, len(e.frames)] for e in extra]}
    if path.exists() and key.exists() and json.loads(key.read_text()) == want:
        return np.load(path, mmap_mode="r")
    n = len(rows) + sum(len(e.frames) for e in extra)
    with replacing(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        step = 256
        for i in show_progress(range(0, len(rows), step), total=-(-len(rows) // step),
                               desc="jaanet: caching training crops", mode=progress, leave=False):
            arr[i:min(i + step, len(rows))] = data.resize_images(store.read(rows[i:i + step])[0], size)
        i = len(rows)
        for e in extra:
            for _, im in show_progress(e.frames.batches(step), total=-(-len(e.frames) // step),
                                       desc="jaanet: caching extra crops", mode=progress, leave=False):
                arr[i:i + len(im)] = data.resize_images(im, size)
                i += len(im)
        arr.flush()
        del arr
    write_text(key, json.dumps(want))
    return np.load(path, mmap_mode="r")


def train_jaanet(store_path, out_dir, cfg: JaaNetConfig, test_fold: int = 3, minutes: float | None = None,
                 extra=None, progress: bool | str = True) -> dict:
    """Train `cfg` on every fold but `test_fold` (plus `extra` frames, same budget: module doc) for its epochs;
    `minutes` is a wall-clock safety net (the summary says when it cut training short); save; score the
    held-out fold. `progress`: a lacgan.progress mode. Under torchrun: one process per device (module doc); ranks
    other than 0 return the training summary without the held-out scores."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = AlignedStore.open(store_path)
    shard, dev = start(cfg.device)
    if cfg.batch_size < shard.world:
        raise ValueError(f"jaanet: batch_size {cfg.batch_size} is smaller than the {shard.world} processes; every "
                         f"process needs at least one row of each step's batch (batch_size is the global batch)")
    progress = progress if shard.main else "off"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    rows = _training_rows(store, test_fold)
    extra = [e for e in extra or () if len(e.frames)]
    for e in extra:
        if e.frames.size != store.size or not np.isfinite(e.landmarks).all():
            raise ValueError(f"{e.frames.name}: extra frames must be {store.size}-px crops with finite landmarks")
    labels = np.concatenate([store.labels()[rows], *[e.frames.labels for e in extra]])
    lm = np.concatenate([store.landmarks.get_orthogonal_selection((rows, slice(None), slice(None))),
                         *[e.landmarks for e in extra]])
    lm49_in = to_49(data.resize_landmarks(lm, store.size, cfg.input_size))
    with main_first():  # rank 0 builds the cache; the others then open the one it wrote
        images = _cache(store, rows, cfg.input_size, out_dir, extra, progress)
    w = torch.from_numpy(au_weights(labels)).to(dev)

    # same seed: same weights on every rank
    net = training_layout(JaaNet(crop=cfg.crop, unit=cfg.unit, regions=cfg.regions).to(dev), dev)
    if shard.world > 1:
        convert_batchnorm(net)
    off = data.centre_offset(cfg.input_size, cfg.crop)
    net.init_landmarks(lm49_in.mean(0) - off)
    opt = build_optimizer(net, cfg)
    start_epoch, ckpt = 0, out_dir / "checkpoint.pt"
    if ckpt.exists():  # every rank reads the same file; rank 0 writes it only after the first step's all-reduce
        start_epoch = _resume(ckpt, net, opt, rng, cfg, dev)
        if shard.main:
            print(f"jaanet: resuming from {ckpt} at epoch {start_epoch}")

    spent_file = out_dir / "progress.json"  # minutes trained so far (not `progress`: that is the display mode)
    spent_before = json.loads(spent_file.read_text())["minutes"] if ckpt.exists() and spent_file.exists() else 0.0
    t0, cpu0 = time.time(), time.process_time()
    budget = None if minutes is None else minutes * 60 - spent_before * 60
    stopped, completed, log = False, start_epoch, {}
    n_batches = len(rows) // cfg.batch_size
    writer = stats.StatsWriter(out_dir / "stats.jsonl" if shard.main else None)
    writer.truncate_after(start_epoch * n_batches)  # a resumed run redoes the unfinished epoch's steps
    with stats.collecting(writer):
        for epoch in range(start_epoch, cfg.epochs):
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, epoch) * g["lr_mult"]
            net.train()
            order = rng.permutation(len(labels))  # real + extra; only the first n_batches batches are used
            bar = show_progress(range(n_batches), total=n_batches, desc=f"jaanet epoch {epoch + 1}/{cfg.epochs}",
                                mode=progress, leave=False)
            for i in bar:
                t_step = time.perf_counter()
                idx, x, lm = _step_batch(images, lm49_in, order, i, cfg, rng, shard)
                loss, log = _train_step(net, opt, x, labels[idx], lm, w, cfg, dev)
                for k, v in {"total": loss, **log}.items():
                    stats.report(f"loss/{k}", v)
                stats.report("time/step_s", time.perf_counter() - t_step)
                writer.flush(epoch * n_batches + i + 1)
                bar.set_postfix(loss=f"{loss:.3f}", land=f"{log['land']:.3f}")
                if budget is not None and _any_rank(time.time() - t0 > budget, dev):
                    stopped = True
                    break
            if stopped:
                break
            completed = epoch + 1
            if shard.main:
                _save_checkpoint(ckpt, net, opt, rng, cfg, completed)
                write_text(spent_file, json.dumps({"minutes": spent_before + (time.time() - t0) / 60}))
    train_minutes = spent_before + (time.time() - t0) / 60

    summary = {"test_fold": test_fold, "train_frames": int(len(rows)),
               "extra_frames": int(len(labels) - len(rows)), "steps_per_epoch": n_batches,
               "train_minutes": round(train_minutes, 2), "epochs_completed": completed,
               "cpu_minutes_this_run": round((time.process_time() - cpu0) / 60, 2),
               "torch_threads": torch.get_num_threads(), "processes": shard.world,
               "stopped_by_time_budget": stopped, "last_losses": log, "device": str(dev)}
    if not shard.main:  # nothing left to share: rank 0 writes the weights and scores the held-out fold alone
        return {**summary, "held_out": {"note": f"scored by rank 0, not rank {shard.rank}"}}
    save_weights(net, cfg, out_dir, au_weights=w.cpu().numpy(), summary=summary)
    summary["held_out"] = _evaluate(JaaNetDetector.load(out_dir), store_path, test_fold)
    save_weights(net, cfg, out_dir, au_weights=w.cpu().numpy(), summary=summary)
    return summary


def _step_batch(images: np.ndarray, lm49: np.ndarray, order: np.ndarray, i: int, cfg: JaaNetConfig,
                rng: np.random.Generator, shard: Shard) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This rank's rows of step i's batch: (frame indices, augmented crops, their landmarks). The whole batch is
    drawn, crops, mirrors and jitter in one process's order from the one generator, on every rank — the draws
    interleave per image, so drawing only a share would change them — and then sliced: any number of processes
    sees one process's batches, and a resumed run an uninterrupted run's. (Augmenting the whole batch on every
    rank costs milliseconds next to the network.)"""
    idx = np.sort(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
    x, lm = data.random_crop_flip(np.asarray(images[idx]), lm49[idx], cfg.crop, rng, cfg.flip)
    x = data.colour_jitter(x, cfg.colour_jitter, rng)
    mine = shard.rows(len(idx))
    return idx[mine], x[mine], lm[mine]


def _train_step(net: JaaNet, opt: torch.optim.Optimizer, x: np.ndarray, labels: np.ndarray, lm: np.ndarray,
                w: torch.Tensor, cfg: JaaNetConfig, dev) -> tuple[float, dict[str, float]]:
    """One SGD step on this rank's rows; the loss is the whole batch's (global reductions), and averaging the
    ranks' gradients gives one process's update (lacgan.distributed). Returns (total loss, its terms)."""
    out = net(data.to_tensor(x, dev))
    loss, log = total_loss(out, torch.from_numpy(labels.astype(np.int64)).to(dev), torch.from_numpy(lm).to(dev),
                           torch.from_numpy(interocular(lm).astype(np.float32)).to(dev), w, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(net.parameters())
    opt.step()
    return loss.item(), log


def _any_rank(flag: bool, dev) -> bool:
    """`flag` on any rank (itself in one process): the ranks stop at the same step, or the others would wait
    forever in the next step's all-reduce."""
    return bool(global_count(int(flag), torch.zeros((), device=dev)) > 0)


def _save_checkpoint(path: Path, net: JaaNet, opt: torch.optim.Optimizer, rng: np.random.Generator,
                     cfg: JaaNetConfig, epoch: int) -> None:
    """Weights, optimizer and the generator's state (as JSON: its 128-bit integers are plain text for
    weights_only loading) after `epoch` epochs."""
    with replacing(path) as tmp:
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "rng": json.dumps(rng.bit_generator.state), "config": json.dumps(asdict(cfg), sort_keys=True)},
                   tmp)


def _resume(path: Path, net: JaaNet, opt: torch.optim.Optimizer, rng: np.random.Generator, cfg: JaaNetConfig,
            dev) -> int:
    """Load a checkpoint written with this config into net, opt and rng; return its epoch. A checkpoint from
    before the generator was saved restarts the draws from the seed (what every resume did then)."""
    state = torch.load(path, map_location=dev, weights_only=True)
    if state.get("config") != json.dumps(asdict(cfg), sort_keys=True):
        raise ValueError(f"{path}: checkpoint was written with another config; use a new --out or the same "
                         f"preset/overrides (checkpoint: {state.get('config')})")
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if "rng" in state:
        rng.bit_generator.state = json.loads(state["rng"])
    return int(state["epoch"])


def _evaluate(detector, store_path, test_fold: int) -> dict:
    """Per-AU F1/acc on the held-out fold (records, list of dicts), or a note when the fold is empty."""
    from detectors.frames import FrameSource
    from detectors.metrics import au_metrics

    frames = FrameSource.from_store(store_path, fold=test_fold)
    if not len(frames):
        return {"note": f"fold {test_fold} has no aligned frames"}
    table = au_metrics(frames.labels, detector.score(frames), detector.supported_aus, frames.frame_ids)
    return {"metrics": table.to_dict(orient="records")}

