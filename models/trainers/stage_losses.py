"""The training step's loss terms, from one table: stage feature -> the terms it adds.

Every term is a pure function of the step's tensors (`StepTensors`), the config and the stage
(`StageContext`); a term whose weight is 0 adds nothing. The table's order is the order of the
float sum of the total loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from models.losses import (depth_normal_loss, flatten_loss, image_edge_weight, lidar_depth_loss,
                           opacity_entropy_loss, photometric_loss, sky_opacity_loss)
from models.scene import MODEL_KEY
from models.trainers.stage_context import StageContext
from models.trainers.sugar_term import SugarRegularizer


@dataclass
class StepTensors:
    """What the loss terms read of one step: the render, the rendered Gaussians and the view."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: Optional[torch.Tensor]
    info: Dict[str, Any]
    gaussians: Dict[str, torch.Tensor]   # the rendered (composed) Gaussians
    slices: Dict[str, slice]             # each model's slice of them
    view: Any
    mask: Optional[torch.Tensor]         # the photometric loss's pixel mask (None: every pixel)
    surface: Any = None                  # the render's SurfaceMaps (normals, unbiased depth), when rendered
    camera: Any = None                   # the camera the step rendered from (a refined pose); None: the view's

    @property
    def render_camera(self):
        return self.view.camera if self.camera is None else self.camera

    @cached_property
    def lidar_depth(self) -> torch.Tensor:
        """The view's LiDAR camera z [H, W] (0: no return), made dense once for every term that reads it."""
        return self.view.lidar_depth


Terms = Dict[str, torch.Tensor]


def photometric(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    loss, _ = photometric_loss(t.rgb, t.view.image, mask=t.mask, ssim_lambda=float(cfg.loss.ssim_lambda))
    return {"photometric": loss}


def opacity_entropy(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    weight = stage.entropy_weight  # the stage's, from render.opacity_entropy.table
    if not weight > 0:
        return {}
    visible = (t.info["radii"][0] > 0).all(dim=-1)
    return {"opacity_entropy": weight * opacity_entropy_loss(t.gaussians["opacities"], visible)}


def sky_opacity(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    if not float(cfg.loss.sky_opacity) > 0:
        return {}
    return {"sky_opacity": float(cfg.loss.sky_opacity) * sky_opacity_loss(t.alpha, t.view.sky_mask)}


def lidar_depth(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    if not float(cfg.loss.lidar_depth) > 0:
        return {}
    return {"lidar_depth": float(cfg.loss.lidar_depth) * lidar_depth_loss(t.depth, t.alpha, t.lidar_depth)}


def sdf_depth_mode(cfg: Any) -> str:
    """The depth the SDF term reads: sugar.sdf_depth, where "auto" is the LiDAR's when the run is
    supervised by LiDAR depth (loss.lidar_depth > 0) and the expected depth otherwise."""
    mode = str(cfg.sugar.sdf_depth)
    if mode == "auto":
        return "lidar" if float(cfg.loss.lidar_depth) > 0 else "expected"
    return mode


def sugar_regularizers(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    """SuGaR's SDF (or density) and normal terms on the background model's slice only."""
    bg = t.slices[MODEL_KEY]
    depth, alpha = t.depth, t.alpha
    mode = sdf_depth_mode(cfg)
    if mode == "unbiased" and t.surface is not None:
        depth = torch.where(t.surface.valid, t.surface.unbiased_depth, t.depth)
    elif mode in ("lidar", "lidar_only"):
        # the LiDAR's camera z where the pixel has a return (a fixed target the Gaussians move to, not a
        # depth the render may move towards them), the rendered depth elsewhere ...
        lidar = t.lidar_depth.to(depth.device, depth.dtype).reshape(depth.shape)
        depth = torch.where(lidar > 0, lidar, depth)
        if mode == "lidar_only":
            # ... or no SDF sample there: the alpha the term reads is 0 off the LiDAR's pixels
            alpha = torch.where(lidar.reshape(alpha.shape) > 0, alpha, torch.zeros_like(alpha))
    return sugar.losses({k: v[bg] for k, v in t.gaussians.items()}, t.info["radii"][0, bg], depth, alpha,
                        t.render_camera.viewmat.detach(), t.view, stage.step)


def depth_normal(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    """The rendered normals against the normals of the rendered unbiased depth, weighted by alpha."""
    weight = float(cfg.sugar.depth_normal_weight)
    if not weight > 0 or t.surface is None:
        return {}
    s = t.surface
    edges = image_edge_weight(t.view.image) if cfg.sugar.depth_normal_edge_aware else None
    return {"depth_normal": weight * depth_normal_loss(s.normals, s.unbiased_depth, s.valid, t.alpha,
                                                       t.view.camera.K, t.mask, edges)}


def flatten(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    """The background's visible Gaussians pulled flat (their smallest scale towards 0)."""
    weight = float(cfg.sugar.flatten_weight)
    if not weight > 0:
        return {}
    bg = t.slices[MODEL_KEY]
    visible = (t.info["radii"][0, bg] > 0).all(dim=-1)
    return {"flatten": weight * flatten_loss(t.gaussians["scales"][bg][visible], sugar.scene_scale)}


def needs_surface(cfg: Any, stage: StageContext) -> bool:
    """Whether the step renders the surface maps: a surface_losses stage whose terms read them."""
    return bool(stage.features["surface_losses"]) and (
        float(cfg.sugar.depth_normal_weight) > 0
        or (bool(stage.features["sugar_losses"]) and sdf_depth_mode(cfg) == "unbiased"))


Term = Callable[[StepTensors, Any, StageContext, SugarRegularizer], Terms]

# stage feature (None: every stage) -> the loss terms it adds, in the order they are summed
LOSS_TABLE: Tuple[Tuple[Optional[str], Tuple[Term, ...]], ...] = (
    (None, (photometric, opacity_entropy, sky_opacity, lidar_depth)),
    ("sugar_losses", (sugar_regularizers,)),
    ("surface_losses", (depth_normal, flatten)),
)


def stage_losses(t: StepTensors, cfg: Any, stage: StageContext, sugar: SugarRegularizer) -> Terms:
    """Every loss term of the stage, by name, in the table's order."""
    losses: Terms = {}
    for feature, terms in LOSS_TABLE:
        if feature is None or stage.features[feature]:
            for term in terms:
                losses.update(term(t, cfg, stage, sugar))
    return losses
