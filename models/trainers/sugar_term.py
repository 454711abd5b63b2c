"""SuGaR's regularizers as a loss term of the training step: the background model's neighbourhoods
(kNN, refreshed every sugar.knn_every steps and when a stage starts), the point sampler's own
generator, and the SDF (or density) and normal losses on the background's slice of the render."""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import torch

from models.losses import (knn, sample_points_around_gaussians, sugar_density_loss, sugar_normal_loss,
                           sugar_sdf_loss, visible_surface_mask)
from models.sugar.geometry import gaussian_frames
from models.trainers.stage_context import StageContext

logger = logging.getLogger("models.trainers")


class SugarRegularizer:
    """The SuGaR loss terms of one model (the background: they flatten Gaussians onto the static
    surface whose mesh is extracted) and the state they carry between steps."""

    def __init__(self, cfg: Any, scene: Any, device: torch.device, scene_scale: float, seed: int) -> None:
        self.cfg = cfg.sugar
        self.scene = scene  # models.scene.GaussianScene: its background model is regularized
        self.device = device
        self.scene_scale = scene_scale
        self.generator = torch.Generator().manual_seed(seed + 17)
        self.neighbours: Optional[torch.Tensor] = None
        self.neighbours_step = -1

    @property
    def model(self) -> Any:
        return self.scene.model

    def on_stage_start(self, stage: StageContext) -> None:
        """After the strategies' prunes: a prune changes the Gaussians, so their neighbourhoods go."""
        if stage.features["prune_low_opacity"]:
            self.neighbours = None
        if stage.features["sugar_losses"]:
            self.refresh(stage.step)

    def refresh(self, step: int) -> None:
        n = self.model.num_gaussians
        k = min(int(self.cfg.knn), n - 1)
        if k < 1:
            raise ValueError(f"step {step}: only {n} Gaussian(s) left, too few for the SuGaR regularizers; "
                             f"lower sugar.prune_opacity (now {self.cfg.prune_opacity}) or train longer "
                             "before the sugar stage")
        if k < int(self.cfg.knn):
            logger.warning("only %d Gaussians: SuGaR neighbourhoods use k=%d instead of %d", n, k, self.cfg.knn)
        self.neighbours = knn(self.model.params["means"].detach(), k=k)
        self.neighbours_step = step

    def losses(self, gs, radii, depth, alpha, viewmat, view, step: int) -> Dict[str, torch.Tensor]:
        """The regularizers on the model's rendered Gaussians `gs` (and their radii) in one view."""
        scfg = self.cfg
        if (self.neighbours is None or step - self.neighbours_step >= int(scfg.knn_every)
                or self.neighbours.shape[0] != self.model.num_gaussians):  # densification on in this stage
            self.refresh(step)
        # each Gaussian's rotation, neighbour-table row and normal, in one pass on a CPU
        rotmats, table, normals = gaussian_frames(gs["means"], gs["quats"], gs["scales"], gs["opacities"])
        gaussians = (gs["means"], rotmats, gs["scales"], gs["opacities"])
        candidates = (radii > 0).all(dim=-1)
        if str(scfg.mode) != "density":
            # as SuGaR: sample only around Gaussians on the visible surface of this view
            candidates &= visible_surface_mask(gs["means"].detach(), rotmats.detach(), gs["scales"].detach(),
                                               depth.detach(), viewmat, view.K, alpha.detach())
        out: Dict[str, torch.Tensor] = {}
        # their indices: the one count the host needs (the sampler draws on the CPU, among that many)
        candidates = candidates.nonzero().squeeze(1)
        if candidates.numel() == 0:
            return out
        m = int(scfg.num_samples_cuda if self.device.type == "cuda" else scfg.num_samples)
        points, gidx = sample_points_around_gaussians(gs["means"], rotmats, gs["scales"], candidates, m,
                                                      generator=self.generator)
        # (the terms' logging stats are not asked for: each would make the host wait for the device)
        if str(scfg.mode) == "density":
            out["sugar_density"], _ = sugar_density_loss(points, gidx, self.neighbours, gaussians,
                                                         weight=float(scfg.sdf_weight), residual_stats=False,
                                                         table=table, normals=normals)
        else:
            factor = scfg.sdf_density_factor
            out["sugar_sdf"], _ = sugar_sdf_loss(points, gidx, self.neighbours, gaussians, depth, alpha, viewmat,
                                                 view.K, self.scene_scale, weight=float(scfg.sdf_weight),
                                                 density_factor=None if factor is None else float(factor),
                                                 estimate=scfg.sdf_estimate, residual_stats=False, table=table)
        out["sugar_normal"], _ = sugar_normal_loss(points, gidx, self.neighbours, gaussians,
                                                   weight=float(scfg.normal_weight), residual_stats=False,
                                                   table=table, normals=normals)
        return out

    # ----- state (top-level checkpoint keys, as before this class existed) ------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"sugar_generator": self.generator.get_state(),
                "neighbours": None if self.neighbours is None else self.neighbours.cpu(),
                "neighbours_step": self.neighbours_step}

    def load_generator(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["sugar_generator"])

    def load_neighbours(self, state: Dict[str, Any]) -> None:
        nbrs = state.get("neighbours")
        self.neighbours = None if nbrs is None else nbrs.to(self.device)
        self.neighbours_step = int(state.get("neighbours_step", -1))
