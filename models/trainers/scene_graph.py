"""MultiTrainer: a scene graph of a static background and rigid nodes (OmniRe's MultiTrainer with
RigidNodes), trained through the same pretrain → entropy → sugar stages as SingleTrainer.

Models, keyed by class name as in drivestudio:
  "Background"  the static VanillaGaussians, initialised from the static LiDAR points (as SingleTrainer);
  "RigidNodes"  one RigidNodes model with the Gaussians of every moving vehicle instance, each in its
                instance's object frame, initialised from the LiDAR points inside its box over all frames;
  "DeformableNodes"  (model.deformable.enabled) one DeformableNodes model with the Gaussians of every
                pedestrian and cyclist (tracks of node type DeformableNodes, or SMPLNodes: the fallback is
                models.gaussians.deformable.NODE_MODELS), in its box frame, bent per frame by a shared
                deformation MLP with its own Adam; initialised as the rigid nodes, topped up with random
                points in the box where the LiDAR has fewer than model.deformable.min_points_per_instance;
  "SMPLNodes"   (model.smpl.body_model set, the scene's humanpose/smpl.pkl) one SMPLNodes model with the
                Gaussians of the pedestrians that have SMPL parameters, bound to their bodies' surfaces and
                posed per frame by LBS (models.trainers.smpl_graph); a per-frame joint residual with its
                own Adam (model.smpl.refine_pose). Pedestrians without parameters stay deformable nodes.
The trainer's GaussianScene (models.scene) is a scene graph: its `compose(frame)` moves the rigid
nodes to the world with each instance's pose at the frame; instances absent from that frame are made
transparent (opacity 0, culled), so every model keeps one contiguous slice of the rendered Gaussians
and SingleTrainer's per-model densification, optimizers, lr schedules, checkpoints and resume apply
unchanged. The trainer builds the nodes and the pose table from the dataset's tracks; the scene
keeps them (and a checkpoint with it), so an opened run needs no dataset.

Stages: the seed asks a MultiTrainer to broadcast `current_stage` / `stage_step` to child trainers.
Here the nodes are models inside one trainer, not trainers: one step renders them together, one loss
and one backward train them together, so there is nothing to broadcast to and no second copy of the
stage that could drift. `node_stages()` reports each node's stage (always the trainer's). What each
stage does to the nodes:
  - densification (pretrain, entropy): every model, each on its slice of the screen-space gradient;
  - opacity entropy: every rendered Gaussian;
  - the sugar stage's low-opacity prune: every model, with its floor per rigid, deformable or SMPL instance;
  - the SuGaR regularizers: the background only (SingleTrainer passes only its slice, and its
    neighbourhoods are the background's), since they flatten Gaussians onto the static surface
    whose mesh is extracted.
Moving instances left without a node (pedestrians and cyclists with model.deformable.enabled false,
cars without LiDAR points, classes the class map gives no node): with `loss.mask_dynamic: false` their
pixels (the bounding rectangle of their box's projection) are left out of the loss, so the background
does not fit them.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict

import numpy as np
import torch

from models.gaussians.deformable import DEFORMABLE_KEY, DeformableNodes, box_points, make_field, node_model
from models.gaussians.rigid import RIGID_KEY, RigidNodes, instance_points
from models.gaussians.vanilla import VanillaGaussians
from models.gaussians.smpl_nodes import SMPL_KEY
from models.scene import RigidTrack
from models.trainers.smpl_graph import build_smpl_nodes, read_smpl_inputs, smpl_candidates
from models.trainers.single import MODEL_KEY, SingleTrainer

logger = logging.getLogger("models.trainers")


class MultiTrainer(SingleTrainer):
    """SingleTrainer whose scene is a graph: the static background plus rigid nodes that follow
    their instance tracks."""

    SCENE_GRAPH = True

    # ----- construction ------------------------------------------------------------------------
    def build_extra_models(self) -> Dict[str, VanillaGaussians]:
        rcfg = self.cfg.model.rigid
        # Which tracks get a rigid node: by default the scene's class map (each dataset's vehicle
        # classes, scenes/<dataset>.py, plus scene.class_map); model.rigid.classes, where set, names
        # the classes instead (case-insensitive).
        names = None if rcfg.classes is None else {str(c).lower() for c in rcfg.classes}

        def is_rigid(track) -> bool:
            if names is not None:
                return track.class_name.lower() in names
            return getattr(track, "node_type", None) == RIGID_KEY
        max_points = rcfg.max_points_per_instance
        margin = rcfg.box_margin  # as scene.static_lidar_mask: what the background lacks
        candidates = [t for t in self.dataset.moving_instances if is_rigid(t)]
        per_track, counts = instance_points(self.dataset, candidates, self.dataset.train_views, max_points, margin,
                                            seed=self.cfg.seed, drop_ground=rcfg.drop_ground)
        self.rigid_tracks = []
        xyz, rgb, ids = [], [], []
        for track, (pts, col), count in zip(candidates, per_track, counts):
            if count == 0:
                logger.warning("moving instance %s (%s): no LiDAR points in its box; it gets no rigid node",
                               track.id, track.class_name)
                continue
            ids.append(torch.full((len(pts),), len(self.rigid_tracks)))
            self.rigid_tracks.append(track)
            xyz.append(pts)
            rgb.append(col)
        models: Dict[str, VanillaGaussians] = {}
        others = [t for t in self.dataset.moving_instances if not is_rigid(t)]
        body, humanposes = read_smpl_inputs(self.cfg, self.dataset)   # bad files: one error, before any step
        self.smpl_tracks = smpl_candidates(others, humanposes) if body is not None else []
        smpl_table = None
        if self.smpl_tracks:
            models[SMPL_KEY], smpl_table = build_smpl_nodes(self, self.smpl_tracks, body, humanposes)
        deformable = self._build_deformable_nodes([t for t in others if not any(t is s for s in self.smpl_tracks)])
        if deformable is not None:
            models = {DEFORMABLE_KEY: deformable, **models}
        noded = self.rigid_tracks + self.deformable_tracks + self.smpl_tracks
        skipped = [t.id for t in self.dataset.moving_instances if not any(t is r for r in noded) and not is_rigid(t)]
        if skipped:
            logger.info("moving instances without a node (their pixels are left out of the loss): %s", ", ".join(skipped))
        nodeless = [t for t in self.dataset.moving_instances if not any(t is r for r in noded)]
        self._nodeless_masks = [box_rectangles(v, nodeless) for v in self._views]
        self._build_pose_table()
        self.gaussian_scene.smpl = smpl_table
        if not self.rigid_tracks:
            logger.warning("no moving vehicle with LiDAR points: the scene graph has no rigid nodes")
            return models
        logger.info("rigid nodes: %d instances, %d Gaussians (%s)", len(self.rigid_tracks),
                    sum(len(x) for x in xyz), ", ".join(f"{t.id}: {len(x)}" for t, x in zip(self.rigid_tracks, xyz)))
        nodes = RigidNodes.from_instance_points(torch.cat(xyz), torch.cat(rgb), torch.cat(ids),
                                                sh_degree=int(self.cfg.model.sh_degree),
                                                init_opacity=float(self.cfg.model.init_opacity))
        return {RIGID_KEY: nodes.to(self.device), **models}

    def _build_deformable_nodes(self, candidates) -> DeformableNodes | None:
        """One DeformableNodes model over the moving instances whose node type maps to it (pedestrians,
        cyclists), each from the LiDAR points in its box; an instance with fewer than
        min_points_per_instance points is topped up with seeded random points in its box (a warning)."""
        dcfg = self.cfg.model.deformable
        self.deformable_tracks = []
        if not dcfg.enabled:
            return None
        tracks = [t for t in candidates if node_model(getattr(t, "node_type", None)) == DEFORMABLE_KEY]
        if not tracks:
            return None
        per_track, counts = instance_points(self.dataset, tracks, self.dataset.train_views,
                                            int(dcfg.max_points_per_instance), float(dcfg.box_margin),
                                            seed=self.cfg.seed, drop_ground=bool(dcfg.drop_ground))
        xyz, rgb, ids = [], [], []
        minimum = int(dcfg.min_points_per_instance)
        for i, (track, (pts, col), count) in enumerate(zip(tracks, per_track, counts)):
            if len(pts) < minimum:
                logger.warning("deformable node %s (%s): %d LiDAR points in its box, fewer than model.deformable."
                               "min_points_per_instance=%d; topped up with random points in the box",
                               track.id, track.class_name, count, minimum)
                extra = box_points(track.box_size[0], minimum - len(pts), seed=int(self.cfg.seed) + i)
                grey = col.mean(0, keepdim=True) if len(col) else torch.full((1, 3), 0.5)
                pts, col = torch.cat([pts, extra]), torch.cat([col, grey.expand(len(extra), 3)])
            xyz.append(pts)
            rgb.append(col)
            ids.append(torch.full((len(pts),), i))
        self.deformable_tracks = tracks
        field = make_field(dcfg, len(tracks), seed=int(self.cfg.seed))
        nodes = DeformableNodes.from_instance_points(torch.cat(xyz), torch.cat(rgb), torch.cat(ids),
                                                     sh_degree=int(self.cfg.model.sh_degree),
                                                     init_opacity=float(self.cfg.model.init_opacity), field=field)
        logger.info("deformable nodes: %d instances, %d Gaussians (%s)", len(tracks), nodes.num_gaussians,
                    ", ".join(f"{t.id} {t.class_name}: {len(x)}" for t, x in zip(tracks, xyz)))
        return nodes.to(self.device)

    def camera_model_params(self):
        """The camera models' and the deformation field's (parameters, lr, final lr): each its own Adam
        with its decay, saved with the camera models' (a checkpoint's "camera_optimizers")."""
        out = super().camera_model_params()
        nodes = self.models.get(DEFORMABLE_KEY)
        if nodes is not None:
            dcfg = self.cfg.model.deformable
            out["deformation"] = (list(nodes.field.parameters()), float(dcfg.lr), float(dcfg.lr_final))
        table = self.gaussian_scene.smpl
        if table is not None and table.refinement is not None:
            scfg = self.cfg.model.smpl
            out["smpl_pose"] = ([table.refinement.residual], float(scfg.pose_lr), float(scfg.pose_lr_final))
        return out

    def loss_mask(self, view, index: int):
        """With loss.mask_dynamic off, every pixel but those of moving instances without a node."""
        if bool(self.cfg.loss.mask_dynamic):
            return super().loss_mask(view, index)
        nodeless = self._nodeless_masks[index]
        return None if nodeless is None else ~nodeless

    def _build_pose_table(self) -> None:
        """Each rigid and deformable instance's object -> world pose per scene frame, and whether it
        exists there, handed to the GaussianScene with the instances' records."""
        frames = sorted(self.dataset.frames)
        poses, present = pose_table(self.rigid_tracks, frames)
        self.gaussian_scene.set_tracks([RigidTrack.of(t) for t in self.rigid_tracks], frames, poses, present)
        poses, present = pose_table(self.deformable_tracks, frames)
        self.gaussian_scene.set_deformable_tracks([RigidTrack.of(t) for t in self.deformable_tracks], poses, present)

    def prune_groups(self, name: str, model: VanillaGaussians):
        """The sugar stage's prune keeps its floor per rigid and deformable instance, so no car and no
        person loses all its Gaussians."""
        return model.instance_ids if name in (RIGID_KEY, DEFORMABLE_KEY, SMPL_KEY) else None

    def group_name(self, name: str, group: int) -> str:
        if name == RIGID_KEY:
            return f"{name} instance {self.rigid_tracks[group].id}"
        if name == DEFORMABLE_KEY:
            return f"{name} instance {self.deformable_tracks[group].id}"
        if name == SMPL_KEY:
            return f"{name} instance {self.smpl_tracks[group].id}"
        return name

    def node_stages(self) -> Dict[str, Dict[str, Any]]:
        """Each node's stage: the trainer's own, since the nodes are models it trains in one step
        (see the module docstring for why there are no child trainers to broadcast to)."""
        features = self.stage_features
        return {name: {"stage": self.current_stage, "stage_step": self.stage_step, "features": dict(features),
                       "sugar_losses": bool(features["sugar_losses"]) and name == MODEL_KEY}
                for name in self.models}


def pose_table(tracks, frames) -> tuple[torch.Tensor, torch.Tensor]:
    """Each track's object -> world pose at each frame [I, F, 4, 4] (identity where absent) and whether
    it exists there [I, F]."""
    poses = torch.eye(4).repeat(len(tracks), len(frames), 1, 1)
    present = torch.zeros(len(tracks), len(frames), dtype=torch.bool)
    for i, track in enumerate(tracks):
        for col, f in enumerate(frames):
            pose = track.pose_at(f)
            if pose is not None:
                poses[i, col], present[i, col] = pose, True
    return poses, present


def box_rectangles(view, tracks) -> torch.Tensor | None:
    """bool [H, W] on the view's device: the bounding rectangles of the tracks' boxes projected into
    `view` at its frame (the whole image for a box across the camera plane); None when none is seen."""
    w2c = torch.linalg.inv(view.camera_to_world.double().cpu())
    K = view.K.double().cpu()
    mask = torch.zeros(view.height, view.width, dtype=torch.bool)
    signs = torch.tensor([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=torch.float64)
    for track in tracks:
        pose = track.pose_at(view.frame_idx)
        if pose is None:
            continue
        k = int(np.nonzero(track.frame_idx == view.frame_idx)[0][0])
        corners = signs * track.box_size[k].double() / 2 @ pose[:3, :3].double().T + pose[:3, 3].double()
        cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
        front = cam[:, 2] > 1e-3
        if not front.any():
            continue
        if not front.all():
            mask[:] = True
            continue
        uv = cam[:, :2] / cam[:, 2:] @ K[:2, :2].T + K[:2, 2]
        c0, r0 = (int(max(math.floor(float(x)), 0)) for x in uv.min(0).values)
        c1, r1 = int(min(math.ceil(float(uv[:, 0].max())), view.width)), int(min(math.ceil(float(uv[:, 1].max())), view.height))
        if c0 < c1 and r0 < r1:
            mask[r0:r1, c0:c1] = True
    return mask.to(view.dynamic_mask.device) if mask.any() else None
