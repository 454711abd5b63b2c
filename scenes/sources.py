"""What each drivestudio dataset's preprocessor writes, as data, and the registry that picks one.

drivestudio (github ziyc/drivestudio) writes every dataset into the same folder names, but the files
mean different things per dataset: per-camera camera->ego extrinsics or per-frame camera->world
ones; cameras in Waymo axes or in OpenCV axes; LiDAR with 14, 6, 5 or 4 columns, in the ego frame
or in the sensor frame with its own poses; different class names. One `DatasetFormat` per dataset
(scenes/waymo.py, nuscenes.py, pandaset.py, argoverse2.py, kitti.py, nuplan.py) states those
facts; `scenes/processed_layout.py` and `scenes/driving_dataset.py` read any of them through it.

    get_format("nuscenes") -> DatasetFormat
    detect_format(root) -> (name, reason)   where the folder's contents make it unambiguous
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Node types as drivestudio's sourceloaders name them (OBJECT_CLASS_NODE_MAPPING values).
RIGID = "RigidNodes"
SMPL = "SMPLNodes"
DEFORMABLE = "DeformableNodes"
NODE_TYPES = (RIGID, SMPL, DEFORMABLE)


@dataclass(frozen=True)
class LidarLayout:
    """A LiDAR file: float32, `columns` values per point, row after row."""

    columns: tuple                 # column names; "x", "y", "z" always, "origin_x".. where stored
    frame: str                     # "ego": points in the frame of ego_pose/{t}.txt;
    #                                "lidar_pose": points in the sensor frame of lidar_pose/{t}.txt

    @property
    def width(self) -> int:
        return len(self.columns)

    def col(self, name: str):
        return self.columns.index(name) if name in self.columns else None

    def describe(self) -> str:
        return f"float32 N x {self.width} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class DatasetFormat:
    name: str                      # the value of scene.dataset
    title: str
    cameras: dict                  # camera id (file name part) -> the source's camera name
    camera_axes: str               # "waymo": camera files in x fwd, y left, z up; "opencv": x right, y down, z fwd
    extrinsics: str                # "camera_to_ego": extrinsics/{cam}.txt;
    #                                "camera_to_world": extrinsics/{t:03d}_{cam}.txt per frame
    poses: str                     # "ego_pose": ego_pose/{t}.txt (ego -> world); "lidar_pose": lidar_pose/{t}.txt
    world: str                     # "first_ego": scene world = ego frame at start_frame;
    #                                "first_front_camera": camera 0 at start_frame, turned to x fwd, y left, z up
    lidar: LidarLayout
    class_nodes: dict = field(default_factory=dict)   # instance class name -> node type
    undistort: bool = False        # drivestudio's configs/datasets/<name>/*.yaml default
    notes: str = ""

    def rigid_classes(self) -> list:
        return [c for c, n in self.class_nodes.items() if n == RIGID]


_REGISTRY: dict = {}


def register(fmt: DatasetFormat) -> DatasetFormat:
    if fmt.name in _REGISTRY and _REGISTRY[fmt.name] is not fmt:
        raise ValueError(f"dataset format {fmt.name!r} registered twice")
    _REGISTRY[fmt.name] = fmt
    return fmt


def _load_all():
    # Importing the modules registers their formats.
    from . import argoverse2, kitti, nuplan, nuscenes, pandaset, waymo  # noqa: F401


def available() -> list:
    _load_all()
    return sorted(_REGISTRY)


def get_format(name: str) -> DatasetFormat:
    _load_all()
    key = str(name).lower().replace("-", "").replace("_", "")
    aliases = {"argoverse": "argoverse2", "av2": "argoverse2", "argoverse2": "argoverse2"}
    key = aliases.get(key, key)
    if key not in _REGISTRY:
        from .processed_layout import SceneFormatError
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
    from .processed_layout import SceneFormatError
    _load_all()
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
