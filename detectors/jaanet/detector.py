"""JAA-Net as a Detector: resize, centre crop, forward, present-probability ≥ 0.5."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from detectors.base import scores_table
from detectors.frames import FrameSource
from detectors.jaanet import data
from detectors.jaanet.model import JaaNet
from detectors.jaanet.config import JaaNetConfig, config_from_json, config_json
from lacgan.atomic import replacing, write_text
from lacgan.device import pick_device
from manifests.aus import AUS

WEIGHTS, CONFIG = "jaanet.safetensors", "config.json"


def save_weights(net: JaaNet, cfg: JaaNetConfig, out_dir, au_weights: np.ndarray, summary: dict) -> Path:
    """Weights (safetensors) then config JSON, each written to a temp file and renamed."""
    out_dir = Path(out_dir)
    with replacing(out_dir / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    digest = hashlib.sha256((out_dir / WEIGHTS).read_bytes()).hexdigest()[:16]
    meta = {"detector": "jaanet", "config": config_json(cfg), "au_weights": au_weights.tolist(),
            "weights_sha256_16": digest, "summary": summary}
    write_text(out_dir / CONFIG, json.dumps(meta, indent=2, default=str))
    return out_dir / WEIGHTS


class JaaNetDetector:
    name = "jaanet"
    supported_aus: tuple[int, ...] = AUS

    def __init__(self, net: JaaNet, cfg: JaaNetConfig, meta: dict, batch_size: int = 64, threshold: float = 0.5,
                 precision: str = "float32"):
        if precision not in ("float32", "bf16"):
            raise ValueError(f"jaanet precision must be float32 or bf16, got {precision!r}")
        self.net, self.cfg, self.meta = net.eval(), cfg, meta
        self.batch_size, self.threshold, self.precision = batch_size, threshold, precision
        self.device = next(net.parameters()).device

    @classmethod
    def load(cls, weights_dir, device: str | None = None, batch_size: int = 64,
             precision: str = "float32") -> "JaaNetDetector":
        if weights_dir is None:
            raise ValueError("jaanet needs --weights DIR (written by `lacgan detect train --detector jaanet`)")
        d = Path(weights_dir)
        for f in (WEIGHTS, CONFIG):
            if not (d / f).exists():
                raise FileNotFoundError(f"{d / f}: missing; train first with `lacgan detect train --detector jaanet`")
        meta = json.loads((d / CONFIG).read_text())
        if meta.get("detector") != "jaanet":
            raise ValueError(f"{d / CONFIG}: written for detector {meta.get('detector')!r}, not jaanet")
        cfg = config_from_json(meta["config"], str(d / CONFIG))
        dev = pick_device(device or cfg.device)
        net = JaaNet(crop=cfg.crop, unit=cfg.unit, regions=cfg.regions)
        net.load_state_dict(load_file(str(d / WEIGHTS)))
        return cls(net.to(dev), cfg, meta, batch_size=batch_size, precision=precision)

    def settings(self) -> dict:  # recorded beside its scores: what was trained, and how far
        out = {"config": config_json(self.cfg), "weights_sha256_16": self.meta.get("weights_sha256_16"),
               "threshold": self.threshold, "test_fold": self.meta.get("summary", {}).get("test_fold"),
               "training": training_budget(self.meta.get("summary", {}), self.cfg)}
        return out if self.precision == "float32" else {**out, "precision": self.precision}

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 (B, S, S, 3) aligned faces -> (B, 12) present-probabilities in AUS order."""
        x = data.centre_crop(data.resize_images(images, self.cfg.input_size), self.cfg.crop)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.net(data.to_tensor(x, self.device))  # bf16: convolutions only; logits stay float32
        return out["au_logp"][:, 1].exp().float().cpu().numpy()

    def score(self, frames: FrameSource) -> pd.DataFrame:
        ids, probs = [], []
        for fid, images in tqdm(frames.batches(self.batch_size), total=-(-len(frames) // self.batch_size),
                                desc="jaanet: scoring", leave=False):
            ids.append(fid)
            probs.append(self.predict(images))
        if not ids:
            return scores_table(np.zeros(0, np.int64), self.supported_aus, np.zeros((0, 12)), np.zeros((0, 12)))
        p = np.concatenate(probs)
        return scores_table(np.concatenate(ids), self.supported_aus, p, (p >= self.threshold).astype(np.int8))


def training_budget(summary: dict, cfg) -> dict:
    """Epochs planned and completed, and whether the wall-clock safety net stopped training early."""
    return {"epochs": cfg.epochs, "epochs_completed": summary.get("epochs_completed"),
            "stopped_by_time_budget": bool(summary.get("stopped_by_time_budget", False))}
