"""What a user sees while training: progress, TensorBoard scalars, PNG snapshots.

Progress is a tqdm bar when stderr is a terminal; otherwise (a log file, a pipe, SLURM) it is one
plain line every `log.progress_every` steps or `log.progress_seconds` seconds, whichever comes
first, and at the last step: a log holds lines, not thousands of carriage-return updates.

A step's values (models.trainers.step_values.StepValues) stay on the device until read; reading them
makes the host wait for the device. The monitor reads them only on the steps it shows: a plain line,
TensorBoard's scalars (every `log.scalars_every` steps and at a stage's first step) and the bar's
loss / PSNR (refreshed on those same steps; its step count moves every step).
"""
from __future__ import annotations

import sys
import time

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

import numpy as np
import torch
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
        self.scalars_every = cfg.log.scalars_every
        self.snapshot_every = cfg.log.snapshot_every
        self._writer = None
        self._use_tb = cfg.log.tensorboard
        self._bar = None
        self._use_bar = cfg.log.progress
        self.progress_every = cfg.log.progress_every
        self.progress_seconds = cfg.log.progress_seconds
        self.stream = sys.stderr           # where progress goes (tqdm's default)
        self._last_line = None             # (time, step) of the last plain line

    @property
    def writer(self):
        if self._writer is None and self._use_tb:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
        return self._writer

    def _progress(self, values: Dict[str, float]) -> None:
        if not self._use_bar:
            return
        isatty = getattr(self.stream, "isatty", None)
        if isatty is None or not isatty():
            self._progress_line(values)
            return
        tr = self.trainer
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=tr.total_steps, initial=tr.step - 1, dynamic_ncols=True, unit="step", file=self.stream)
        spec = tr.current_stage_spec
        self._bar.set_description(f"{tr.current_stage} {tr.stage_step + 1}/{spec.steps}", refresh=False)
        if self._shows_values(tr.step, tr.stage_step) or getattr(values, "ready", True):
            self._bar.set_postfix(loss=f"{values['loss']:.4f}", psnr=f"{values['psnr']:.2f}",
                                  gs=values["num_gaussians"], refresh=False)
        self._bar.update(1)

    def _shows_values(self, step: int, stage_step: int) -> bool:
        """The steps whose loss and PSNR the bar shows: TensorBoard's (every log.scalars_every-th, a stage's
        first) and the last (`step`: steps run so far); and any step whose values were read already."""
        return step % self.scalars_every == 0 or stage_step == 0 or step == self.trainer.total_steps

    def _progress_line(self, values: Dict[str, float]) -> None:
        tr = self.trainer
        step = tr.step  # the step has run
        now = time.monotonic()
        if self._last_line is None:
            self._last_line = (now, step - 1)
        last_time, last_step = self._last_line
        due = ((self.progress_every and step % self.progress_every == 0)
               or (self.progress_seconds and now - last_time >= self.progress_seconds)
               or step == tr.total_steps)
        if not due:
            return
        rate = (step - last_step) / max(now - last_time, 1e-9)
        spec = tr.current_stage_spec
        print(f"step {step}/{tr.total_steps} | {tr.current_stage} {tr.stage_step + 1}/{spec.steps} | "
              f"loss {values['loss']:.4f} | psnr {values['psnr']:.2f} | gaussians {values['num_gaussians']} | "
              f"{rate:.2f} step/s", file=self.stream, flush=True)
        self._last_line = (now, step)

    def on_step(self, tr: "BasicTrainer", info) -> None:
        """Step callback: progress, TensorBoard scalars, and every log.snapshot_every steps a PNG."""
        values = info.values
        step = tr.step  # the step has run
        self._progress(values)
        if self.writer is not None and (step % self.scalars_every == 0 or info.stage_step == 0):
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.add_scalar("train/stage_index", tr.stage_schedule.stage_index, step)
            self.writer.add_scalar("train/opacity_entropy_weight", tr.stage_context.entropy_weight, step)
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
