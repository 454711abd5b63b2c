"""What a user sees while training: a progress bar, TensorBoard scalars, PNG snapshots."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from models.losses import psnr  # noqa: F401  (its home moved; kept importable here)

if TYPE_CHECKING:  # pragma: no cover
    from models.trainers.base import BasicTrainer


def colorize_depth(depth: Optional[torch.Tensor], alpha: torch.Tensor) -> np.ndarray:
    """Depth as an inverse-depth grey ramp (near = bright); empty pixels black."""
    h, w = alpha.shape
    if depth is None:
        return np.zeros((h, w, 3), np.float32)
    d = depth.detach().float().cpu().numpy()
    valid = (alpha.detach().cpu().numpy() > 0.5) & np.isfinite(d) & (d > 0)
    inv = np.zeros_like(d)
    if valid.any():
        inv[valid] = 1.0 / d[valid]
        lo, hi = np.percentile(inv[valid], [2, 98])
        inv = np.clip((inv - lo) / max(hi - lo, 1e-8), 0, 1) * valid
    return np.repeat(inv[..., None], 3, axis=2)


def snapshot_image(gt, rgb, alpha, depth) -> np.ndarray:
    """ground truth | colour | depth | alpha, side by side, uint8."""
    def np3(t):
        return t.detach().float().clamp(0, 1).cpu().numpy()
    a = alpha.detach().float().clamp(0, 1).cpu().numpy()
    tiles = [np3(gt), np3(rgb), colorize_depth(depth, alpha), np.repeat(a[..., None], 3, axis=2)]
    return (np.concatenate(tiles, axis=1) * 255 + 0.5).astype(np.uint8)


class TrainingMonitor:
    def __init__(self, trainer: "BasicTrainer") -> None:
        self.trainer = trainer
        cfg = trainer.cfg
        self.out = Path(trainer.output_dir)
        self.renders = self.out / "renders"
        self.scalars_every = int(OmegaConf.select(cfg, "log.scalars_every", default=10) or 10)
        self.snapshot_every = int(OmegaConf.select(cfg, "log.snapshot_every", default=0) or 0)
        self._writer = None
        self._use_tb = bool(OmegaConf.select(cfg, "log.tensorboard", default=True))
        self._bar = None
        self._use_bar = bool(OmegaConf.select(cfg, "log.progress", default=True))

    @property
    def writer(self):
        if self._writer is None and self._use_tb:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
        return self._writer

    def _progress(self, values: Dict[str, float]) -> None:
        tr = self.trainer
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=tr.total_steps, initial=tr.step - 1, dynamic_ncols=True, unit="step",
                             disable=not self._use_bar)
        spec = tr.current_stage_spec
        self._bar.set_description(f"{tr.current_stage} {tr.stage_step + 1}/{spec.steps}", refresh=False)
        self._bar.set_postfix(loss=f"{values['loss']:.4f}", psnr=f"{values['psnr']:.2f}",
                              gs=values["num_gaussians"], refresh=False)
        self._bar.update(1)

    def on_step(self, tr: "BasicTrainer", info) -> None:
        """Step callback: progress bar, TensorBoard scalars, and every log.snapshot_every steps a PNG."""
        values = info.values
        step = tr.step  # the step has run
        self._progress(values)
        if self.writer is not None and (step % self.scalars_every == 0 or info.stage_step == 0):
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.add_scalar("train/stage_index", tr.stage_schedule.stage_index, step)
            self.writer.add_scalar("train/opacity_entropy_weight", tr.render_cfg.opacity_entropy_weight, step)
        if self.snapshot_every and step % self.snapshot_every == 0 and info.outputs is not None:
            view = info.outputs.view
            rgb_s, alpha_s, depth_s = tr.render_view(view)  # depth for the snapshot even when not trained
            self.write_snapshot(f"step_{step:06d}_{info.stage}", view.image, rgb_s, alpha_s, depth_s)

    def write_snapshot(self, name: str, gt, rgb, alpha, depth) -> Path:
        self.renders.mkdir(parents=True, exist_ok=True)
        path = self.renders / f"{name}.png"
        Image.fromarray(snapshot_image(gt, rgb, alpha, depth)).save(path)
        return path

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
