"""One model's Gaussian life: growth, the entropy stage's prune, the sugar prune and its floor.

`ModelStrategy` has gsplat's strategy interface (`check_sanity`, `step_pre_backward`,
`step_post_backward`, as in gsplat's examples/simple_trainer.py) plus the stage event
`on_stage_start(stage_context, ...)`; it owns its running state (gsplat's grad2d / count /
scene_scale), which a checkpoint saves. A trainer holds one per model and hands each its own slice
of the render info (`model_info`). Nothing else adds or removes Gaussians.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
from gsplat.strategy.ops import remove

from models.gaussians.densify import (StagedDefaultStrategy, build_strategy, load_strategy_state,
                                      strategy_state_dict)
from models.rendering.projection import ALPHA_THRESHOLD
from models.trainers.stage_context import StageContext

logger = logging.getLogger("models.trainers")


def prune_mask_with_floor(opacity: torch.Tensor, threshold: float, keep_fraction: float, keep_min: int,
                          groups: Optional[torch.Tensor] = None, spare_whole_group: bool = False
                          ) -> Tuple[torch.Tensor, list]:
    """Which Gaussians a prune of opacity < threshold removes, keeping in each group (all Gaussians when
    groups is None) at least min(n, max(ceil(keep_fraction · n), keep_min)) of its n Gaussians: the most
    opaque ones, or with ``spare_whole_group`` all of them. Returns (remove mask, [(group, n, kept by the
    threshold, kept) for each group where the floor applied])."""
    low = opacity < threshold
    if groups is None:
        groups = torch.zeros(len(opacity), dtype=torch.long, device=opacity.device)
    spared = []
    for g in torch.unique(groups).tolist():
        idx = torch.nonzero(groups == g).reshape(-1)
        n = len(idx)
        floor = min(n, max(math.ceil(keep_fraction * n), keep_min))
        kept = n - int(low[idx].sum())
        if kept >= floor:
            continue
        if spare_whole_group:
            low[idx] = False
            floor = n
        else:
            order = torch.argsort(opacity[idx], descending=True, stable=True)
            low[idx[order[:floor]]] = False
        spared.append((int(g), n, kept, floor))
    return low, spared


def model_info(info: Mapping[str, Any], sl: slice) -> Dict[str, Any]:
    """One model's slice of a render's info (its Gaussians are `sl` of the rendered ones): radii and the
    screen-space means, whose gradient (when the step retained it) is the slice of the render's."""
    means2d = info["means2d"]
    own = means2d.detach()[:, sl]
    if (means2d.is_leaf or means2d.retains_grad) and means2d.grad is not None:
        own.grad = means2d.grad[:, sl]
    return dict(info, radii=info["radii"][:, sl], means2d=own)


@dataclass(frozen=True)
class PruneFloor:
    """The share and count of a model's (or rigid instance's) Gaussians every prune keeps
    (sugar.prune_keep_fraction, sugar.prune_keep_min)."""

    fraction: float = 0.1
    keep_min: int = 32


class ModelStrategy:
    """The strategy of one model (named `name`): gsplat's DefaultStrategy for growth where the stage
    densifies, the entropy stage's removal of what can no longer be drawn, and SuGaR's once-only prune
    of low opacities when a stage with `prune_low_opacity` starts, both with the floor."""

    def __init__(self, name: str, densify_cfg: Optional[Mapping[str, Any]], scene_scale: float,
                 floor: PruneFloor, prune_opacity: float,
                 groups: Callable[[], Optional[torch.Tensor]] = lambda: None,
                 group_name: Callable[[int], str] = None) -> None:
        self.name = name
        self.growth: StagedDefaultStrategy = build_strategy(densify_cfg)
        self.state: Dict[str, Any] = self.growth.initialize_state(scene_scale=scene_scale)
        self.floor = floor
        self.prune_opacity = float(prune_opacity)
        self.groups = groups
        self.group_name = group_name or (lambda g: name)

    # ----- gsplat's interface --------------------------------------------------------------------
    def check_sanity(self, params, optimizers) -> None:
        self.growth.check_sanity(params, optimizers)

    def step_pre_backward(self, params, optimizers, step: int, info: Mapping[str, Any],
                          stage: StageContext) -> None:
        """Before backward, on the render's info: keep the screen-space gradient where the stage densifies."""
        if stage.features["densify"]:
            self.growth.step_pre_backward(params, optimizers, self.state, step, info)

    def step_post_backward(self, params, optimizers, step: int, info: Mapping[str, Any], stage: StageContext,
                           packed: bool = False) -> None:
        """After the optimizer step, on this model's slice of the info (`model_info`): grow and prune
        where the stage densifies; otherwise, with `prune_transparent`, every refine_every steps remove
        the Gaussians below α 1/255."""
        features = stage.features
        if features["densify"]:
            self.growth.step_post_backward(params, optimizers, self.state, step, info, packed=packed,
                                           reset_opacity=bool(features["reset_opacity"]))
        elif features["prune_transparent"] and step % int(self.growth.refine_every) == 0:
            self.prune_transparent(params, optimizers, stage)

    # ----- stage events --------------------------------------------------------------------------
    def on_stage_start(self, stage: StageContext, params, optimizers) -> None:
        if stage.features["prune_low_opacity"]:
            self.prune_low_opacity(params, optimizers, stage)

    # ----- prunes --------------------------------------------------------------------------------
    def prune_below(self, params, optimizers, threshold: float, spare_whole_group: bool = False
                    ) -> Tuple[torch.Tensor, list]:
        """Remove the Gaussians with opacity < threshold, with the floor per model or rigid instance
        (prune_mask_with_floor). Returns (the opacities before, the groups where the floor applied)."""
        opacity = torch.sigmoid(params["opacities"].detach()).reshape(-1)
        low, spared = prune_mask_with_floor(opacity, threshold, self.floor.fraction, self.floor.keep_min,
                                            self.groups(), spare_whole_group=spare_whole_group)
        if bool(low.any()):
            remove(params, optimizers, self.state, low)
        return opacity, spared

    def prune_transparent(self, params, optimizers, stage: StageContext) -> None:
        """Remove the Gaussians the renderer can no longer draw, α < 1/255 (in the entropy stage, those
        its term has driven to 0). Every backend's projection culls them (radius 0), so they receive no
        gradient, take no part in the entropy term's mean over the visible Gaussians, and Adam's momentum
        only carries them further down: they cannot come back, and removing them changes the rest only
        through the order of float sums. A model or rigid instance where the prune would leave fewer than
        the sugar prune's floor keeps all of its Gaussians: the floor and its warning belong to that
        prune, and a floor of a share of what is left must not compound from one prune to the next."""
        before = len(params["means"])
        self.prune_below(params, optimizers, ALPHA_THRESHOLD, spare_whole_group=True)
        if len(params["means"]) != before:
            logger.info("stage %s, step %d: removed %d of %d %s Gaussians with opacity < 1/255 (no longer drawn)",
                        stage.name, stage.step, before - len(params["means"]), before, self.name)

    def prune_low_opacity(self, params, optimizers, stage: StageContext) -> None:
        """SuGaR's once-only prune of α < sugar.prune_opacity, with a floor: where it would leave fewer than
        max(fraction × n, keep_min) of the model's (or a rigid instance's) n Gaussians, the most opaque ones
        up to that floor stay, with a warning that says why (the stages before were too short for the
        entropy term to make enough Gaussians opaque)."""
        threshold = self.prune_opacity
        before = len(params["means"])
        opacity, spared = self.prune_below(params, optimizers, threshold)
        if spared:
            undecided = float(((opacity > 0.1) & (opacity < 0.9)).float().mean())
            what = "; ".join(f"{self.group_name(g)}: {kept} of {n} -> kept the {floor} most opaque"
                             for g, n, kept, floor in spared)
            logger.warning(
                "stage %s: the opacity < %.2f prune would have left too few Gaussians (%s; floor: "
                "sugar.prune_keep_fraction=%g of each, at least sugar.prune_keep_min=%d). %.0f%% of %s's "
                "opacities are still undecided, in (0.1, 0.9): the stages before (%s) were too short for the "
                "opacity entropy to make them opaque (SuGaR prunes after 7,000 steps of 3DGS and 2,000 with "
                "the entropy term)", stage.name, threshold, what, self.floor.fraction, self.floor.keep_min,
                100 * undecided, self.name, ", ".join(f"{n} {s}" for n, s in stage.stages_before) or "none")
        logger.info("stage %s: pruned %d of %d %s Gaussians with opacity < %.2f", stage.name,
                    before - len(params["means"]), before, self.name, threshold)

    # ----- state ---------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return strategy_state_dict(self.state)

    def load_state_dict(self, saved: Mapping[str, Any], device: Any = "cpu") -> None:
        self.state = load_strategy_state(saved, device)


def warn_short_densification(schedule: Any, refine_start_iter: int) -> None:
    """Warn when the densifying stages end before gsplat's first refinement: nothing would grow."""
    end = max((schedule.start_of(i) + s.steps for i, s in enumerate(schedule.stages) if s.features["densify"]),
              default=0)
    if 0 < end <= refine_start_iter:
        logger.warning("the densifying stages end at step %d, before densify.refine_start_iter=%d: this schedule "
                       "is too short for any densification", end, refine_start_iter)
