"""What the viewer adds to its 3D scene besides the rendered image: the cameras as frusta, the scene
graph's rigid nodes as boxes posed at a frame, the extracted mesh, and viser's own in-browser
splats of the background Gaussians. Functions of a viser server and the scene's parts."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from models.cameras import field_of_view
from models.gaussians.rigid import rotmat_to_quat
from models.gaussians.vanilla import sh0_to_rgb
from models.rendering.projection import quat_to_rotmat

logger = logging.getLogger(__name__)


def add_frusta(server, views, labels, radius: float, on_click: Callable[[object, int], None]) -> list:
    """One frustum per view (training blue, test red), a thumbnail where the view has its image."""
    handles = []
    for i, ((split, view), _label) in enumerate(zip(views, labels)):
        c2w = view.camera_to_world.detach().cpu().double()
        fov = field_of_view(float(view.K[1, 1]), view.height)
        image = getattr(view, "image", None)  # an opened run saves no images: no thumbnails
        thumb = (image.detach().cpu().numpy() * 255).astype(np.uint8) if image is not None else None
        handle = server.scene.add_camera_frustum(
            f"/cameras/{split}/{i:04d}", fov=fov, aspect=view.width / view.height, scale=0.02 * radius,
            color=(40, 90, 220) if split == "train" else (220, 60, 40), image=thumb,
            wxyz=rotmat_to_quat(c2w[:3, :3]).numpy(), position=c2w[:3, 3].numpy())
        handle.on_click(lambda event, i=i: on_click(event.client, i))
        handles.append(handle)
    return handles


def add_node_boxes(server, tracks) -> list:
    """A wireframe box per node of the scene graph, rigid, deformable then SMPL (posed by :func:`pose_node_boxes`)."""
    return [server.scene.add_box(f"/nodes/{i:03d}_{track.id}", color=(255, 170, 0),
                                 dimensions=tuple(track.box_size.tolist()), wireframe=True)
            for i, track in enumerate(tracks)]


def pose_node_boxes(boxes: List, gaussians, frame: int) -> None:
    """Show each box at its node's pose at ``frame``; hide the nodes absent there."""
    if not boxes:
        return
    poses, present = gaussians.instance_poses(int(frame))
    bent_poses, bent_present = gaussians.deformable_instance_poses(int(frame))   # pedestrians, cyclists
    body_poses, body_present = gaussians.smpl_box_poses(int(frame))              # pedestrians on body models
    poses = torch.cat([poses, bent_poses, body_poses])
    present = torch.cat([present, bent_present, body_present])
    for box, pose, here in zip(boxes, poses.cpu(), present.cpu()):
        box.visible = bool(here)
        if here:
            box.wxyz = rotmat_to_quat(pose[:3, :3].double()).numpy()
            box.position = pose[:3, 3].double().numpy()


def add_mesh(server, run_dir: Optional[Path]) -> Optional[Path]:
    """The run's extracted mesh (level set, else TSDF), hidden, with a "Show mesh" checkbox; None
    when the run has none or it cannot be read (a warning; the viewer goes on without it)."""
    if run_dir is None:
        return None
    for name in ("mesh_levelset.ply", "mesh_tsdf.ply"):
        path = Path(run_dir) / "exports" / name
        if path.is_file():
            import trimesh
            try:
                mesh = trimesh.load(path, process=False, force="mesh")
            except Exception as exc:  # a broken file must not take the viewer down
                logger.warning("mesh %s could not be read (%s); not shown", path, exc)
                return None
            handle = server.scene.add_mesh_trimesh("/mesh", mesh, visible=False)
            box = server.gui.add_checkbox(f"Show mesh ({name})", False)
            box.on_update(lambda _: setattr(handle, "visible", box.value))
            return path
    return None


def add_browser_splats(server, model, lock):
    """viser's in-browser splatting of ``model``'s Gaussians (degree-0 colour), read under ``lock``."""
    with lock:
        g = {k: v.detach().float().cpu().clone() for k, v in model.get_gaussians().items()}
    R = quat_to_rotmat(g["quats"])
    cov = R @ torch.diag_embed(g["scales"] ** 2) @ R.transpose(1, 2)
    return server.scene.add_gaussian_splats(
        "/splats", centers=g["means"].numpy(), covariances=cov.numpy(),
        rgbs=sh0_to_rgb(g["colors"][:, 0]).clamp(0, 1).numpy(), opacities=g["opacities"].reshape(-1, 1).numpy())
