"""What a stage switches on, and the value a training step receives about its stage.

A stage's features are on/off flags (the YAML still names them under a stage's `hooks` key, the
seed's spelling; `features` is accepted too). `StageContext` is handed to the step, the strategies
and the loss table: it is the one carrier of the stage's name, position, features and entropy
weight, so no config is written to pass a weight along.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Dict, Mapping, Tuple

# Features a stage can switch on. The schedule validates every configured name against this.
KNOWN_FEATURES: Tuple[str, ...] = (
    "densify",             # the densification strategy grows and prunes Gaussians
    "reset_opacity",       # ... and resets opacities every densify.reset_every steps (needs densify)
    "render_depth",        # render expected depth ("RGB+ED") every step
    "sugar_losses",        # SuGaR's SDF and normal regularizers (need render_depth)
    "surface_losses",      # render normals and the unbiased depth (models.rendering.surface) and add the
                           # depth-normal consistency term, weight sugar.depth_normal_weight
    "prune_low_opacity",   # prune Gaussians below sugar.prune_opacity once, when the stage starts
    "prune_transparent",   # without densify: every densify.refine_every steps, remove the Gaussians below
                           # α 1/255, which the projection culls (no gradient, never drawn again)
    "refine_poses",        # with cameras.pose.enabled, the training poses' corrections are learned (else held)
)

# Defaults for the seed's stage names so the seed's YAML (names and steps only) works as written.
# A stage's configured features override these key by key.
DEFAULT_STAGE_FEATURES: Dict[str, Dict[str, bool]] = {
    "pretrain": {"densify": True, "reset_opacity": True, "render_depth": False, "sugar_losses": False,
                 "surface_losses": False, "prune_low_opacity": False, "prune_transparent": False,
                 "refine_poses": True},
    # no opacity reset here: the entropy term drives opacities to 0 or 1, and a reset to 0.01 would
    # hand it Gaussians that it then drives to 0 (a whole model can be pruned away). No densification
    # either, as in SuGaR's coarse run: the entropy term then decides a fixed set of Gaussians before the
    # sugar stage's prune, instead of clones and splits arriving undecided just before it (docs/results.md).
    # What the entropy term drives below 1/255 is removed every densify.refine_every steps, since a CPU
    # step's cost grows with the count
    "entropy": {"densify": False, "reset_opacity": False, "render_depth": False, "sugar_losses": False,
                "surface_losses": False, "prune_low_opacity": False, "prune_transparent": True,
                "refine_poses": True},
    "sugar": {"densify": False, "reset_opacity": False, "render_depth": True, "sugar_losses": True,
              "surface_losses": True, "prune_low_opacity": True, "prune_transparent": False,
              "refine_poses": True},
}


def resolve_features(name: str, configured: Mapping[str, bool]) -> Dict[str, bool]:
    """Every known feature of a stage: off, then the defaults of its name, then its configured ones."""
    features = {f: False for f in KNOWN_FEATURES}
    features.update(DEFAULT_STAGE_FEATURES.get(name, {}))
    features.update({str(k): bool(v) for k, v in configured.items()})
    return features


@dataclass(frozen=True)
class StageContext:
    """The stage of one training step, handed to the step as a value (built by BasicTrainer.update_stage)."""

    name: str                          # the stage's name
    index: int                         # its index in the schedule
    stage_step: int                    # the step within the stage (0 on its first step)
    step: int                          # the global step
    features: Mapping[str, bool]       # every KNOWN_FEATURES flag of the stage (read-only)
    entropy_weight: float              # the stage's opacity-entropy weight (render.opacity_entropy.table)
    stages_before: Tuple[Tuple[str, int], ...] = ()   # (name, steps) of the stages that ran before it

    @staticmethod
    def frozen(features: Mapping[str, bool]) -> Mapping[str, bool]:
        return MappingProxyType(dict(features))
