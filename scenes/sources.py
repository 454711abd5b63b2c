"""The registry of drivestudio's datasets: which `DatasetFormat` a scene folder is read with.

drivestudio (github ziyc/drivestudio) writes every dataset into the same folder names, but the files
mean different things per dataset: per-camera camera->ego extrinsics or per-frame camera->world
ones; cameras in Waymo axes or in OpenCV axes; LiDAR with 14, 6, 5 or 4 columns, in the ego frame
or in the sensor frame with its own poses; different class names. One `DatasetFormat`
(scenes/dataset_format.py) per dataset (scenes/waymo.py, nuscenes.py, pandaset.py, argoverse2.py,
kitti.py, nuplan.py) states those facts; `scenes/processed_layout.py` and `scenes/driving_dataset.py`
read any of them through it.

    get_format("nuscenes") -> DatasetFormat
    detect_format(root) -> (name, reason)   where the folder's contents make it unambiguous
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import argoverse2, kitti, nuplan, nuscenes, pandaset, waymo
from .dataset_format import DEFORMABLE, NODE_TYPES, RIGID, SMPL, DatasetFormat, LidarLayout  # noqa: F401
from .errors import SceneFormatError

_FORMATS = (argoverse2.FORMAT, kitti.FORMAT, nuplan.FORMAT, nuscenes.FORMAT, pandaset.FORMAT, waymo.FORMAT)
_REGISTRY: dict = {fmt.name: fmt for fmt in _FORMATS}
if len(_REGISTRY) != len(_FORMATS):
    raise ValueError(f"two dataset formats share a name: {sorted(f.name for f in _FORMATS)}")


def available() -> list:
    return sorted(_REGISTRY)


def get_format(name: str) -> DatasetFormat:
    key = str(name).lower().replace("-", "").replace("_", "")
    aliases = {"argoverse": "argoverse2", "av2": "argoverse2", "argoverse2": "argoverse2"}
    key = aliases.get(key, key)
    if key not in _REGISTRY:
        raise SceneFormatError(f"scene.dataset: expected 'auto' or one of {sorted(_REGISTRY)}; found {name!r}")
    return _REGISTRY[key]


_PER_FRAME = re.compile(r"^(\d+)_(\w+)\.txt$")
_PER_CAMERA = re.compile(r"^(\w+)\.txt$")


def detect_format(root: Path) -> tuple:
    """(dataset name, why) from what the folder holds; SceneFormatError where that is ambiguous.

    The facts used, from drivestudio's preprocessors:
      - nuScenes writes per-frame camera->world extrinsics/{t}_{cam}.txt and lidar_pose/, no ego_pose/;
      - PandaSet writes per-frame extrinsics/{t}_{cam}.txt and ego_pose/ (the LiDAR's pose), no lidar_pose/;
      - Waymo, Argoverse 2, KITTI and nuPlan write per-camera camera -> ego extrinsics/{cam}.txt;
        Waymo's camera frames are in Waymo axes (x forward, y left, z up: the camera's z column points
        up in the ego frame), the others' in OpenCV axes (y column points down), and those three write
        all their cameras (7, 2 and 8), whatever cameras are later loaded.
    """
    root = Path(root)
    ext_dir = root / "extrinsics"
    names = sorted(p.name for p in ext_dir.glob("*.txt")) if ext_dir.is_dir() else []
    per_frame = [n for n in names if _PER_FRAME.match(n)]
    has_ego, has_lidar_pose = (root / "ego_pose").is_dir(), (root / "lidar_pose").is_dir()
    hint = f"; set scene.dataset to one of {sorted(_REGISTRY)}"
    if per_frame:
        if has_lidar_pose and not has_ego:
            return "nuscenes", f"per-frame camera->world extrinsics ({per_frame[0]}) and lidar_pose/ without ego_pose/"
        if has_ego and not has_lidar_pose:
            return "pandaset", f"per-frame camera->world extrinsics ({per_frame[0]}) and ego_pose/ without lidar_pose/"
        raise SceneFormatError(f"{root}: cannot tell the dataset: per-frame extrinsics ({per_frame[0]}) with "
                               f"ego_pose/ {'present' if has_ego else 'absent'} and lidar_pose/ "
                               f"{'present' if has_lidar_pose else 'absent'}{hint}")
    cams = sorted(m.group(1) for m in map(_PER_CAMERA.match, names) if m)
    axes = _camera_axes(ext_dir, cams)
    if axes == "waymo":
        return "waymo", (f"extrinsics/ holds per-camera files ({', '.join(cams)}) whose camera frames have z up "
                         "(Waymo's camera axes; every other dataset writes OpenCV cameras)")
    if axes == "opencv":
        hit = [f.name for f in _REGISTRY.values() if f.extrinsics == "camera_to_ego" and f.camera_axes == "opencv"
               and sorted(str(c) for c in f.cameras) == cams]
        if len(hit) == 1:
            return hit[0], (f"extrinsics/ holds OpenCV cameras {', '.join(cams)}, the {len(cams)} cameras "
                            f"{hit[0]} writes")
    found = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "no extrinsics files"
    raise SceneFormatError(f"{root}: cannot tell the dataset from extrinsics/ ({found}): Argoverse 2, KITTI and "
                           f"nuPlan write 7, 2 and 8 per-camera files in OpenCV axes, Waymo its cameras in Waymo "
                           f"axes{hint}")


def _camera_axes(ext_dir: Path, cams: list):
    """'waymo' if every camera -> ego rotation has the camera's z axis pointing up (Waymo's camera axes:
    x forward, y left, z up), 'opencv' if every one has its y axis pointing down; None otherwise."""
    votes = set()
    for c in cams:
        try:
            m = np.loadtxt(ext_dir / f"{c}.txt", dtype=np.float64, ndmin=2)
        except Exception:
            continue      # unreadable: the layout check reports it precisely
        if m.shape != (4, 4):
            continue
        if m[2, 2] > 0.7:
            votes.add("waymo")
        elif m[2, 1] < -0.7:
            votes.add("opencv")
        else:
            return None
    return votes.pop() if len(votes) == 1 else None
