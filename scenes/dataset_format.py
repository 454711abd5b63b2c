"""What a drivestudio dataset's preprocessor writes, as data: one `DatasetFormat` per dataset.

The per-dataset modules (scenes/waymo.py, nuscenes.py, ...) each state theirs as `FORMAT`;
scenes/sources.py gathers them into the registry that picks one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
