"""MultiTrainer's SMPL nodes: which pedestrians get one, and the SMPLNodes model and pose table built
for them from the scene's humanpose/smpl.pkl and the user's body model (config model.smpl).

A pedestrian (track of node type SMPLNodes) gets an SMPL node where model.smpl.body_model is set and
the scene's humanpose/smpl.pkl holds its instance; the others (and every one when body_model is null)
stay deformable nodes (models.gaussians.deformable.node_model decides). A body model given to a scene
without humanpose/smpl.pkl is a warning, not an error: the same config can then train streets with and
without SMPL parameters. A missing or malformed body-model file, or a malformed humanpose file, is an
error raised while the trainer is built, before any step.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from models.gaussians.deformable import node_model
from models.gaussians.rigid import instance_points
from models.gaussians.smpl_body import SMPLBody
from models.gaussians.smpl_nodes import SMPL_KEY, SMPLNodes, SMPLPoseRefinement
from models.scene import RigidTrack, SMPLPoseTable

logger = logging.getLogger("models.trainers")


def read_smpl_inputs(cfg, dataset) -> Tuple[Optional[SMPLBody], dict]:
    """(the body model, {instance id: HumanTrack}) of a run; (None, {}) where body_model is null or the
    scene has no humanpose/smpl.pkl (a warning). Raises BodyModelError / SMPLFileError for bad files."""
    path = cfg.model.smpl.body_model
    if path is None:
        return None, {}
    from scenes.smpl_format import SMPL_FILE, read_humanpose
    body = SMPLBody.from_file(Path(str(path)).expanduser())      # BodyModelError: missing or malformed
    if not (Path(dataset.root) / SMPL_FILE).is_file():
        logger.warning("model.smpl.body_model is set but %s has no %s (drivestudio's human-pose preprocessing "
                       "writes it): its pedestrians are deformable nodes", dataset.root, SMPL_FILE)
        return None, {}
    return body, read_humanpose(dataset.root)


def _instance(track) -> Optional[int]:
    """The track's instance id in humanpose/smpl.pkl: its instances_info.json key."""
    key = getattr(track, "key", None)
    try:
        return int(track.id if key is None else key)
    except (TypeError, ValueError):
        return None


def smpl_candidates(tracks, humanposes: dict) -> list:
    """The tracks that get an SMPL node (their node type maps to SMPLNodes and they have parameters)."""
    return [t for t in tracks
            if node_model(getattr(t, "node_type", None), has_smpl=_instance(t) in humanposes) == SMPL_KEY]


def build_smpl_nodes(trainer, tracks: list, body: SMPLBody, humanposes: dict) -> Tuple[SMPLNodes, SMPLPoseTable]:
    """SMPLNodes on each track's rest body (betas: the file's mean over valid frames), coloured by the
    mean of the LiDAR points in its box (grey without any), and their pose table over the scene's frames."""
    from scenes.smpl_format import stack_humanposes
    cfg, dataset = trainer.cfg, trainer.dataset
    frames = sorted(dataset.frames)
    start, end = frames[0], frames[-1] + 1
    cams = {}
    for v in dataset.views:
        try:
            cam = int(v.cam_name)
        except ValueError:
            continue
        cams.setdefault(cam, np.tile(np.eye(4), (end - start, 1, 1)))[v.frame_idx - start] = \
            v.camera_to_world.detach().cpu().double().numpy()
    poses = stack_humanposes(humanposes, [_instance(t) for t in tracks], cams,
                             np.asarray(dataset.world_from_log, float), start, end)
    cols = torch.as_tensor([f - start for f in frames])
    rotmats, valid = poses.rotmats[cols], poses.valid[cols]
    root = None if poses.root is None else poses.root[cols]
    box = torch.eye(4).repeat(len(frames), len(tracks), 1, 1)
    for i, t in enumerate(tracks):
        for c, f in enumerate(frames):
            pose = t.pose_at(f)
            if pose is not None:
                box[c, i] = pose
            elif root is None:
                valid[c, i] = False          # no box to place the body at
    scfg = cfg.model.smpl
    per_track, _ = instance_points(dataset, tracks, dataset.train_views, 500, float(cfg.model.deformable.box_margin),
                                   seed=int(cfg.seed), drop_ground=True)
    rgb = torch.stack([col.mean(0) if len(col) else torch.full((3,), 0.5) for _, col in per_track])
    nodes = SMPLNodes.from_body(body, poses.betas, per_instance=int(scfg.gaussians_per_instance), rgb=rgb,
                                sh_degree=int(cfg.model.sh_degree), init_opacity=float(cfg.model.init_opacity),
                                seed=int(cfg.seed))
    refinement = (SMPLPoseRefinement(len(tracks), len(frames), body.num_joints) if bool(scfg.refine_pose) else None)
    table = SMPLPoseTable([RigidTrack.of(t) for t in tracks], rotmats, valid, root, box, refinement)
    logger.info("SMPL nodes: %d pedestrians, %d Gaussians (%s), body model %s", len(tracks), nodes.num_gaussians,
                ", ".join(t.id for t in tracks), body.source)
    return nodes.to(trainer.device), table.to(trainer.device)


__all__ = ["build_smpl_nodes", "read_smpl_inputs", "smpl_candidates"]
