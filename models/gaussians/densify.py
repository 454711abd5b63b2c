"""Densification via ``gsplat.strategy.DefaultStrategy`` (pure PyTorch; runs on CPU).

The strategy object is built from a plain config dict; its running state (``grad2d``, ``count``,
optionally ``radii``, and ``scene_scale``) can be saved and restored exactly for resume.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

import torch
from gsplat.strategy import DefaultStrategy

STRATEGY_KEYS = tuple(f.name for f in dataclasses.fields(DefaultStrategy))


def build_strategy(cfg: Optional[Mapping[str, Any]] = None) -> DefaultStrategy:
    """``DefaultStrategy`` from a dict such as ``{"refine_start_iter": 500, "refine_stop_iter":
    15000, "refine_every": 100, "reset_every": 3000, "grow_grad2d": 2e-4, "prune_opa": 0.005}``.
    Unknown keys raise one clear error."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(STRATEGY_KEYS))
    if unknown:
        raise ValueError(f"unknown densification keys {unknown}; expected a subset of {list(STRATEGY_KEYS)}")
    return DefaultStrategy(**cfg)


def init_strategy_state(strategy: DefaultStrategy, scene_scale: float = 1.0) -> Dict[str, Any]:
    return strategy.initialize_state(scene_scale=scene_scale)


def strategy_state_dict(state: Mapping[str, Any]) -> Dict[str, Any]:
    """A detached, CPU copy of the strategy state (tensors or None, plus the float scene_scale)."""
    out = {}
    for k, v in state.items():
        out[k] = v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
    return out


def load_strategy_state(saved: Mapping[str, Any], device: Any = "cpu") -> Dict[str, Any]:
    """Inverse of :func:`strategy_state_dict`, placing tensors on ``device``."""
    if "scene_scale" not in saved:
        raise ValueError(f"strategy state lacks 'scene_scale'; keys are {sorted(saved)}")
    out = {}
    for k, v in saved.items():
        out[k] = v.detach().clone().to(device) if isinstance(v, torch.Tensor) else v
    return out


def check_optimizers_match(params: Mapping[str, torch.nn.Parameter],
                           optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """Raise if an optimizer does not hold exactly its parameter, or its Adam moments do not have
    the parameter's shape (what a bad clone/split/prune would leave behind)."""
    for name, p in params.items():
        opt = optimizers[name]
        held = opt.param_groups[0]["params"]
        if len(held) != 1 or held[0] is not p:
            raise AssertionError(f"optimizer {name!r} does not hold the current parameter")
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st and st[key].shape != p.shape:
                raise AssertionError(f"optimizer {name!r} {key} shape {tuple(st[key].shape)} != {tuple(p.shape)}")
