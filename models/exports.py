"""Exports that other splat tools open: Gaussians, cameras, background colour, scene graph.

What a run's ``exports/`` folder gets (``export_scene`` of a GaussianScene and its cameras: at the
end of training; ``export_run`` of a run opened with models.run.open_run: ``tools/export.py``):

  gaussians.ply        the background Gaussians, INRIA's 3DGS vertex layout (float32 only)
  gaussians.spz        (format "spz") the same Gaussians in Niantic's SPZ, y up (models/splat_files.py)
  gaussians.glb        (format "gltf") the same Gaussians as glTF with KHR_gaussian_splatting, y up
  cameras.json         every training and test view in INRIA's layout: id, img_name, width,
                       height, position (camera centre), rotation (camera -> world, OpenCV camera
                       axes, rows), fx, fy — as INRIA's ``camera_to_JSON`` writes it
  rigid_nodes.ply      (scene graph) every rigid node in its own object frame, INRIA's layout plus
                       a float32 ``instance_id`` (splat readers expect float properties only)
  rigid_nodes.json     (scene graph) per instance: its id, track name, class and its
                       object -> export-axes pose at every frame it exists
  scene_frame_K.ply    (``--frame K``) background and rigid nodes posed at frame K, SMPL nodes posed by
                       their bodies at K, and the deformable
                       nodes (pedestrians, cyclists) deformed at K's time and posed, one standard PLY
                       (and .spz / .glb with those formats)
  supersplat_settings.json   (viewer axes) the SuperSplat viewer's settings: opens at the first
                       training camera on the learned background (its ?settings= parameter)
  export_info.json     the axes and the 4x4 transform from the training world, the learned
                       background colour, the step, the SH degree, which camera ids are test views

Axes. The training world is the first ego frame: x forward, y left, z up (drivestudio's processed
layout). Splat viewers are written for INRIA/COLMAP scenes, whose world is close to a camera's
OpenCV frame: x right, **y down**, z forward. SuperSplat turns a loaded PLY 180 degrees about z for
that reason, and antimatter15's splat viewer and INRIA's SIBR viewer take "up" as -y. A z-up
street therefore lies on its side there. ``axes="viewer"`` (the default) writes everything in
x right, y down, z forward of the first ego frame (so a level front camera looks along +z), which
is a rotation of the world: means, quaternions and the SH coefficients are rotated with it (view-
dependent colour turns with the scene), scales and opacities are unchanged, and cameras.json is
written in the same axes, so the scene opens upright and a viewer can jump to a training camera.
``axes="world"`` writes the training world as it is (what the checkpoint holds). SPZ and glTF fix
their own axes (right-up-back: the viewer axes turned half a turn about x, so y is up), whatever
``axes`` says; export_info.json gives their transform from the training world too.

Meshes (tools/extract_mesh.py) stay in the training world: tools/eval.py compares them with the
ground-truth surface there; export_info.json's transform maps them to the viewer axes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from models.atomic_write import atomic_write
from models.cameras import field_of_view
from models.gaussians.deformable import DEFORMABLE_KEY
from models.gaussians.smpl_nodes import SMPL_KEY
from models.gaussians.rigid import RIGID_KEY, quat_multiply, rotmat_to_quat, sh_rotation
from models.run import RunCameras, view_image_name
from models.scene import GaussianScene
from models.splat_files import UP_FROM_DOWN, write_gaussians_ply, write_gltf, write_spz

AXES = ("viewer", "world")
FORMATS = ("ply", "spz", "gltf")  # gaussians.ply / gaussians.spz / gaussians.glb

# export = VIEWER_FROM_WORLD @ world: x right (= -left), y down (= -up), z forward.
VIEWER_FROM_WORLD = torch.tensor([[0.0, -1.0, 0.0],
                                  [0.0, 0.0, -1.0],
                                  [1.0, 0.0, 0.0]])

# INRIA's vertex properties, in INRIA's order (gaussian_model.construct_list_of_attributes, SH degree 3).
INRIA_FIELDS = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])

# SPZ's and glTF's axes: x right, y up, z back (the viewer axes turned half a turn about x)
Y_UP_FROM_WORLD = UP_FROM_DOWN @ VIEWER_FROM_WORLD

PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def axes_rotation(axes: str) -> Tensor:
    """3x3 rotation from the training world to the export axes."""
    if axes not in AXES:
        raise ValueError(f"axes={axes!r}: expected one of {', '.join(AXES)}")
    return VIEWER_FROM_WORLD.clone() if axes == "viewer" else torch.eye(3)


def _rigid(R: Tensor, t: Optional[Tensor] = None) -> Tensor:
    T = torch.eye(4, dtype=R.dtype)
    T[:3, :3] = R
    if t is not None:
        T[:3, 3] = t
    return T


# ----- moving Gaussians -------------------------------------------------------------------------
@torch.no_grad()
def transform_params(params: Dict[str, Tensor], R: Tensor, t: Optional[Tensor] = None, sh_degree: int = 3
                     ) -> Dict[str, Tensor]:
    """Raw Gaussian parameters (log scales, logit opacities, wxyz quaternions, SH) moved by the
    rigid motion x -> R x + t; per-Gaussian ``R [N, 3, 3]`` / ``t [N, 3]`` or one shared ``R [3, 3]``."""
    means = params["means"].float()
    R = R.to(means)
    if R.dim() == 2 and t is None and torch.equal(R, torch.eye(3, dtype=R.dtype, device=R.device)):
        return {k: v.detach().clone() for k, v in params.items()}  # exact: no SH least squares
    shared = R.dim() == 2
    Rn = R.expand(len(means), 3, 3) if shared else R
    out = {k: v.detach().clone() for k, v in params.items()}
    out["means"] = torch.einsum("nij,nj->ni", Rn, means) + (0 if t is None else t.to(means))
    q = rotmat_to_quat(R)
    out["quats"] = quat_multiply(q.expand(len(means), 4) if shared else q, params["quats"].float())
    if params["shN"].shape[1] > 0:  # band 0 (sh0) is the same in every direction
        colors = torch.cat([params["sh0"], params["shN"]], dim=1).float()
        M = sh_rotation(R, sh_degree)
        rotated = torch.einsum("kj,njc->nkc", M, colors) if shared else torch.einsum("nkj,njc->nkc", M, colors)
        out["shN"] = rotated[:, 1:].contiguous()
    return out


def model_params(model) -> Dict[str, Tensor]:
    return {k: model.params[k].detach().cpu().float() for k in PARAM_KEYS}


def posed_node_params(nodes, poses: Tensor, present: Tensor, params: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
    """The rigid nodes' raw parameters (or ``params``: the deformable nodes' deformed at a frame) moved
    to the world by their instances' poses ``[I, 4, 4]``; Gaussians of instances absent from the frame
    (``present [I]`` false) are left out."""
    params = model_params(nodes) if params is None else params
    ids = nodes.instance_ids.cpu()
    poses, present = poses.detach().cpu().float(), present.detach().cpu()
    keep = present[ids]
    params = {k: v[keep] for k, v in params.items()}
    ids = ids[keep]
    out = transform_params(params, poses[ids, :3, :3], poses[ids, :3, 3], nodes.sh_degree)
    out["instance_ids"] = ids.float()
    return out


# ----- writing ----------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> Path:
    return atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode("utf-8")))


def cameras_json(views: Sequence, R: Tensor) -> List[Dict[str, Any]]:
    """INRIA's cameras.json entries (``utils/camera_utils.camera_to_JSON``) for ``views`` in the
    export axes: position = camera centre, rotation = camera -> world rotation (OpenCV camera
    axes) as a list of rows, fx / fy in pixels at the view's size."""
    R = R.double()
    out = []
    for i, view in enumerate(views):
        c2w = view.camera_to_world.detach().cpu().double()
        K = view.K.detach().cpu().double()
        out.append({"id": i, "img_name": view_image_name(view), "width": int(view.width), "height": int(view.height),
                    "position": (R @ c2w[:3, 3]).tolist(), "rotation": (R @ c2w[:3, :3]).tolist(),
                    "fy": float(K[1, 1]), "fx": float(K[0, 0])})
    return out


# SuperSplat's viewer rolls a loaded PLY 180 degrees about z (a y-down capture becomes its y-up world):
# a point (x, y, z) of the file is drawn at (-x, -y, z).
SUPERSPLAT_FROM_FILE = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))


def supersplat_settings(views: Sequence, R: Tensor, background: Sequence[float], orbit_distance: float) -> Dict[str, Any]:
    """The SuperSplat viewer's settings.json (version 2) that opens at ``views[0]`` (the first
    training camera), orbiting a point ``orbit_distance`` ahead of it, on the learned background.
    Exact in a browser window of the view's aspect ratio; another aspect shows more or less."""
    def pose(view) -> Dict[str, Any]:
        c2w = view.camera_to_world.detach().cpu().double()
        M = SUPERSPLAT_FROM_FILE.double() @ R.double()
        position = M @ c2w[:3, 3]
        forward = M @ c2w[:3, 2]
        # the viewer sets camera.horizontalFov = canvas width > height when it applies a camera
        # (supersplat-viewer 1.36.2), so fov is horizontal on a landscape canvas, vertical otherwise:
        # give the one a canvas of the view's shape uses (checks/splat_viewer.py measures the framing)
        if view.width > view.height:
            fov = math.degrees(field_of_view(float(view.K[0, 0]), view.width))
        else:
            fov = math.degrees(field_of_view(float(view.K[1, 1]), view.height))
        return {"initial": {"position": position.tolist(), "target": (position + orbit_distance * forward).tolist(),
                            "fov": fov}}

    return {"version": 2, "tonemapping": "none", "highPrecisionRendering": False,
            "background": {"color": [float(c) for c in background]},
            "postEffectSettings": {
                "sharpness": {"enabled": False, "amount": 0},
                "bloom": {"enabled": False, "intensity": 0.1, "blurLevel": 2},
                "grading": {"enabled": False, "brightness": 1, "contrast": 1, "saturation": 1, "tint": [1, 1, 1]},
                "vignette": {"enabled": False, "intensity": 0.5, "inner": 0.3, "outer": 0.75, "curvature": 1},
                "fringing": {"enabled": False, "intensity": 0.5}},
            "animTracks": [], "cameras": [pose(v) for v in views[:1]], "annotations": [], "startMode": "default"}


def parse_formats(formats: Union[str, Sequence[str]]) -> List[str]:
    """["ply", "spz", ...] of a comma-separated string or a sequence; one clear error for a bad name."""
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    bad = [f for f in names if f not in FORMATS]
    if bad or not names:
        raise ValueError(f"--format {','.join(bad) or repr(formats)}: expected a comma-separated list of "
                         f"{', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def write_gaussian_files(folder: Path, stem: str, key: str, world_params: Dict[str, Tensor], sh_degree: int,
                         R: Tensor, formats: Sequence[str]) -> Dict[str, Path]:
    """``<stem>.ply`` (in the export axes ``R``) / ``.spz`` / ``.glb`` (y up) of raw world-frame
    Gaussians; returned as {key: ply, key_spz: spz, key_gltf: glb}."""
    written: Dict[str, Path] = {}
    if "ply" in formats:
        written[key] = write_gaussians_ply(folder / f"{stem}.ply", transform_params(world_params, R, sh_degree=sh_degree))
    if "spz" in formats or "gltf" in formats:
        up = transform_params(world_params, Y_UP_FROM_WORLD, sh_degree=sh_degree)
        if "spz" in formats:
            written[f"{key}_spz"] = write_spz(folder / f"{stem}.spz", up)
        if "gltf" in formats:
            written[f"{key}_gltf"] = write_gltf(folder / f"{stem}.glb", up)
    return written


def background_rgb(scene: GaussianScene) -> List[float]:
    return [float(x) for x in torch.sigmoid(scene.background.detach().cpu().float())]


def export_run(run, folder: Union[str, Path], axes: str = "viewer", frame: Optional[int] = None,
               formats: Union[str, Sequence[str]] = ("ply",)) -> Dict[str, Path]:
    """``export_scene`` of a run opened with models.run.open_run (its scene, cameras and step)."""
    return export_scene(run.scene, run.cameras, folder, axes=axes, frame=frame, step=run.step, formats=formats)


def export_scene(scene: GaussianScene, cameras: RunCameras, folder: Union[str, Path], *, axes: str = "viewer",
                 frame: Optional[int] = None, step: int = 0,
                 formats: Union[str, Sequence[str]] = ("ply",)) -> Dict[str, Path]:
    """Write the exports of a trained scene and its cameras into ``folder`` (see the module doc);
    with ``frame`` also ``scene_frame_<frame>``. ``step``: the training step, for export_info.json.
    ``formats``: which of ply, spz, gltf the Gaussians are written as. Returns {name: path}."""
    folder = Path(folder)
    R = axes_rotation(axes)
    formats = parse_formats(formats)
    frames = sorted(int(f) for f in cameras.frames)
    if frame is not None and int(frame) not in frames:
        raise ValueError(f"--frame {frame}: the scene has frames {frames[0]}..{frames[-1]} "
                         f"({len(frames)} frames: {', '.join(map(str, frames[:12]))}{' ...' if len(frames) > 12 else ''})")
    written: Dict[str, Path] = {}
    bg = scene.model
    written.update(write_gaussian_files(folder, "gaussians", "gaussians", model_params(bg), bg.sh_degree, R, formats))
    views = list(cameras.train_views) + list(cameras.test_views)
    written["cameras"] = _write_json(folder / "cameras.json", cameras_json(views, R))
    T = _rigid(R)
    nodes = scene.models.get(RIGID_KEY)
    tracks = list(scene.tracks)
    if nodes is not None and "ply" in formats:
        names = [t.id for t in tracks]
        written["rigid_nodes"] = write_gaussians_ply(
            folder / "rigid_nodes.ply", model_params(nodes),
            extra={"instance_id": nodes.instance_ids.cpu().numpy().astype(np.float32)},
            comments=[f"instance {i} {name}" for i, name in enumerate(names)])
        instances = []
        for i, track in enumerate(tracks):
            poses = {}
            for f in frames:
                pose = scene.pose_at(i, f)
                if pose is not None:
                    poses[str(f)] = (T @ pose.detach().cpu().float()).tolist()
            instances.append({"instance_id": i, "track": track.id, "class": track.class_name,
                              "obj_to_export": poses})
        written["rigid_nodes_json"] = _write_json(folder / "rigid_nodes.json", {
            "axes": axes, "ply": "rigid_nodes.ply",
            "note": "Gaussians are in their instance's object frame (x forward, y left, z up, box centre); "
                    "obj_to_export[frame] is the 4x4 pose into this export's axes",
            "instances": instances})
    if frame is not None:
        parts = [model_params(bg)]
        if nodes is not None:
            poses, present = scene.instance_poses(int(frame))
            posed = posed_node_params(nodes, poses, present)
            posed.pop("instance_ids")
            parts.append(posed)
        deformable = scene.models.get(DEFORMABLE_KEY)
        if deformable is not None:   # deformed at the frame's time, then posed
            with torch.no_grad():
                bent = {k: v.detach().cpu().float() for k, v in deformable.deformed(scene.frame_time(int(frame))).items()}
            posed = posed_node_params(deformable, *scene.deformable_instance_poses(int(frame)), params=bent)
            posed.pop("instance_ids")
            parts.append(posed)
        people = scene.models.get(SMPL_KEY)
        if people is not None and scene.smpl is not None:   # posed by their bodies' LBS at the frame
            with torch.no_grad():
                rot, inst, present = scene.smpl_pose(int(frame))
                g = people.world_gaussians(rot, inst, present)
            keep = present[people.instance_ids].cpu()
            colors = g["colors"].detach().cpu().float()
            raw = {"means": g["means"], "quats": g["quats"], "scales": people.params["scales"],
                   "opacities": people.params["opacities"]}
            posed = {k: v.detach().cpu().float() for k, v in raw.items()}
            posed.update(sh0=colors[:, :1], shN=colors[:, 1:])
            parts.append({k: posed[k][keep] for k in PARAM_KEYS})
        world = {k: torch.cat([p[k] for p in parts]) for k in PARAM_KEYS}
        written.update(write_gaussian_files(folder, f"scene_frame_{int(frame):03d}", "scene_frame", world,
                                            bg.sh_degree, R, formats))
    if axes == "viewer" and "ply" in formats:  # SuperSplat opens the PLY; its roll assumes a y-down file
        written["supersplat"] = _write_json(folder / "supersplat_settings.json", supersplat_settings(
            views, R, background_rgb(scene), orbit_distance=0.25 * float(cameras.scene_radius)))
    test_ids = list(range(len(cameras.train_views), len(views)))
    written["info"] = _write_json(folder / "export_info.json", {
        "axes": axes,
        "axes_meaning": ("x right, y down, z forward of the first ego frame (INRIA/COLMAP viewers' y-down)"
                         if axes == "viewer" else "the training world: first ego frame, x forward, y left, z up"),
        "export_from_world": T.tolist(),
        "formats": formats,
        "y_up_from_world": _rigid(Y_UP_FROM_WORLD).tolist(),
        "y_up_meaning": ".spz and .glb: x right, y up, z back of the first ego frame (SPZ's and glTF's axes)",
        "background_rgb": background_rgb(scene),
        "step": int(step),
        "sh_degree": int(bg.sh_degree),
        "num_gaussians": {name: int(m.num_gaussians) for name, m in scene.models.items()},
        "cameras": {"file": "cameras.json", "train_ids": list(range(len(cameras.train_views))), "test_ids": test_ids},
        "frame": None if frame is None else int(frame),
        "files": sorted(p.name for p in written.values()),
        "meshes": "exports/mesh_*.ply stay in the training world (tools/eval.py scores them there); "
                  "apply export_from_world to view them with these Gaussians",
    })
    return written

