"""What a finished training run writes: its exports and metrics.json (test-view PSNR / SSIM)."""
from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("models.trainers")


def write_results(trainer: Any) -> None:
    """exports/ (trainer.export_gaussians), metrics.json (trainer.evaluate with the test renders), a log line."""
    exports = trainer.output_dir / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    trainer.export_gaussians(exports)
    metrics = trainer.evaluate(write_renders=True)
    metrics["render_backend"] = trainer.render_backend
    with open(trainer.output_dir / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    logger.info("test views: PSNR %.2f dB, SSIM %.4f over %d views; Gaussians: %d -> %s",
                metrics["test"]["psnr"], metrics["test"]["ssim"], metrics["test"]["views"],
                metrics["num_gaussians"], exports)
