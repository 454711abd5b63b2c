"""Values of the training config checked before anything is built or written (before step 0).

Each bad value is one ValueError naming the key, the value and what was expected. The stage
schedule, the entropy table, the densification keys and the scene are checked where they are
read (base.py, densify.py, scenes/); this covers the plain numbers and words of the config.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable, List, Tuple

from omegaconf import OmegaConf

from models.rendering.rasterize import BACKENDS
from models.sugar.regularizers import SDF_ESTIMATES


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def int_at_least(lo: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: _int(v) and v >= lo), f"an integer >= {lo}"


def real_between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    def ok(v: Any) -> bool:
        return _real(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return ok, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


POSITIVE = ((lambda v: _real(v) and v > 0), "a finite number > 0")
NON_NEGATIVE = ((lambda v: _real(v) and v >= 0), "a finite number >= 0")
BOOL = ((lambda v: isinstance(v, bool)), "true or false")
DEVICE = ((lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None),
          "auto, cpu, cuda or cuda:N")
THREADS = ((lambda v: v is None or (_int(v) and v >= 1)), "an integer >= 1 (or null: torch's default)")
STOP_AFTER = ((lambda v: v is None or (_int(v) and v >= 0)), "null or an integer >= 0 (a global step)")
SUGAR_MODE = ((lambda v: v in ("sdf", "density")), "sdf or density")

# key -> (check, expectation); a key absent from the config is left to its reader's default
CHECKS = {
    "seed": int_at_least(0),
    "device": DEVICE,
    "num_threads": THREADS,
    "stop_after": STOP_AFTER,
    **{f"optim.lr.{k}": POSITIVE for k in ("means", "means_final", "sh0", "shN", "opacities", "scales", "quats")},
    "optim.lr.background": NON_NEGATIVE,
    "model.sh_degree": (lambda v: _int(v) and 0 <= v <= 3, "an integer in [0, 3]"),
    "model.sh_degree_interval": int_at_least(1),
    "model.init_opacity": real_between(0.0, 1.0, lo_open=True, hi_open=True),
    "model.learn_background": BOOL,
    "loss.ssim_lambda": real_between(0.0, 1.0),
    "loss.sky_opacity": NON_NEGATIVE,
    "loss.lidar_depth": NON_NEGATIVE,
    "loss.mask_dynamic": BOOL,
    # gsplat's DefaultStrategy takes these as they are: refine_every=0 ended a run with a ZeroDivisionError
    # at the first refinement, a prune_opa of 1 pruned every Gaussian
    "densify.refine_start_iter": int_at_least(0),
    "densify.refine_stop_iter": int_at_least(0),
    "densify.refine_every": int_at_least(1),
    "densify.reset_every": int_at_least(1),
    "densify.grow_grad2d": POSITIVE,
    "densify.grow_scale3d": POSITIVE,
    "densify.prune_opa": real_between(0.0, 1.0, hi_open=True),
    "densify.prune_scale3d": POSITIVE,
    "densify.max_gaussians": int_at_least(0),
    "render.backend": ((lambda v: v in BACKENDS), ", ".join(BACKENDS[:-1]) + " or " + BACKENDS[-1]),
    "render.near_plane": POSITIVE,
    "render.far_plane": POSITIVE,
    "sugar.prune_opacity": real_between(0.0, 1.0, hi_open=True),
    "sugar.mode": SUGAR_MODE,
    "sugar.sdf_weight": NON_NEGATIVE,
    "sugar.sdf_density_factor": ((lambda v: v is None or (_real(v) and v > 0)), "null or a finite number > 0"),
    "sugar.sdf_estimate": ((lambda v: v in SDF_ESTIMATES), " or ".join(repr(e) for e in SDF_ESTIMATES)),
    "sugar.normal_weight": NON_NEGATIVE,
    "sugar.knn": int_at_least(1),
    "sugar.knn_every": int_at_least(1),
    "sugar.num_samples": int_at_least(1),
    "sugar.num_samples_cuda": int_at_least(1),
    "checkpoint.every": int_at_least(0),
    "checkpoint.keep": int_at_least(0),
    "log.scalars_every": int_at_least(1),
    "log.snapshot_every": int_at_least(0),
    "log.progress_every": int_at_least(0),
    "log.progress_seconds": NON_NEGATIVE,
    "log.progress": BOOL,
    "log.tensorboard": BOOL,
}


def check_training_config(cfg: Any) -> None:
    """Raise one ValueError listing every bad value of `cfg` (key, value, expectation)."""
    problems: List[str] = []
    for key, (ok, expected) in CHECKS.items():
        missing = object()
        value = OmegaConf.select(cfg, key, default=missing)
        if value is missing:
            continue
        if not ok(value):
            problems.append(f"{key}={value!r} (expected {expected})")
    near = OmegaConf.select(cfg, "render.near_plane", default=None)
    far = OmegaConf.select(cfg, "render.far_plane", default=None)
    if _real(near) and _real(far) and far <= near:
        problems.append(f"render.far_plane={far!r} (expected more than render.near_plane={near!r})")
    if problems:
        raise ValueError("bad config value" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))


def check_stage_features(schedule: Any) -> None:
    """Features that need another in the same stage (the schedule checks the names themselves)."""
    for spec in schedule.stages:
        features = spec.features
        if features["sugar_losses"] and not features["render_depth"]:
            raise ValueError(f"optim.stage_schedule: stage {spec.name!r} turns on sugar_losses, which need the "
                             "rendered depth: set its render_depth feature too")


def prune_floor(cfg: Any) -> Tuple[float, int]:
    """(sugar.prune_keep_fraction, sugar.prune_keep_min): the share and count of Gaussians every prune keeps."""
    fraction, keep_min = cfg.sugar.get("prune_keep_fraction", 0.1), cfg.sugar.get("prune_keep_min", 32)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"sugar.prune_keep_fraction={fraction!r}: expected a fraction in [0, 1]")
    if isinstance(keep_min, bool) or not isinstance(keep_min, int) or keep_min < 0:
        raise ValueError(f"sugar.prune_keep_min={keep_min!r}: expected an integer >= 0")
    return float(fraction), int(keep_min)
