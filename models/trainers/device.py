"""The torch device and render backend a run uses, from the config's `device` and `render.backend`."""
from __future__ import annotations

import logging
from typing import Any, Tuple

import torch

logger = logging.getLogger("models.trainers")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available here; use device=cpu or device=auto")
    return torch.device(name)


def device_and_backend(cfg: Any) -> Tuple[torch.device, str]:
    """(device, render backend) of a training config, logged with the CPU numerics in use."""
    from models.rendering.rasterize import resolve_backend
    from models.reproducibility import describe as numerics_description
    device = resolve_device(cfg.device)
    backend = resolve_backend(str(cfg.render.backend), device)
    logger.info("rendering on %s with the %s backend%s", device, backend,
                " (render.backend=auto: the compiled C++ rasterizer is unavailable, see the warning above; "
                "the numbers differ from a run on the compiled backend in the last digits)"
                if backend == "torch" and str(cfg.render.backend) == "auto" else "")
    if device.type == "cpu":
        logger.info(numerics_description())
    return device, backend
