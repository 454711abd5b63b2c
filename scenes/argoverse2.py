"""Argoverse 2 (sensor dataset) as drivestudio's datasets/argoverse/argoverse_preprocess.py writes it.

- cameras 0 ring_front_center, 1 ring_front_left, 2 ring_front_right, 3 ring_side_left,
  4 ring_side_right, 5 ring_rear_left, 6 ring_rear_right (the seven ring cameras);
- extrinsics/{cam}.txt: camera -> ego (ego_SE3_cam), OpenCV axes;
- intrinsics/{cam}.txt: fx fy cx cy and five zeros;
- ego_pose/{t}.txt: city_SE3_ego at the sweep's time;
- lidar/{t}.bin: float32 N x 4 (x, y, z, intensity) in the ego frame (no ray origins);
- instance classes are AV2 categories in capitals (REGULAR_VEHICLE, PEDESTRIAN, ...).
"""
from .dataset_format import DEFORMABLE, RIGID, SMPL, DatasetFormat, LidarLayout

_VEHICLES = ("ARTICULATED_BUS", "BOX_TRUCK", "BUS", "LARGE_VEHICLE", "MOTORCYCLE", "RAILED_VEHICLE",
             "REGULAR_VEHICLE", "SCHOOL_BUS", "TRUCK", "TRUCK_CAB", "VEHICULAR_TRAILER")
_HUMANS = ("PEDESTRIAN", "OFFICIAL_SIGNALER")
_DEFORMABLE = ("ANIMAL", "BICYCLE", "BICYCLIST", "DOG", "MOTORCYCLIST", "STROLLER", "WHEELCHAIR", "WHEELED_DEVICE",
               "WHEELED_RIDER")

FORMAT = DatasetFormat(
    name="argoverse2",
    title="Argoverse 2",
    cameras={0: "ring_front_center", 1: "ring_front_left", 2: "ring_front_right", 3: "ring_side_left",
             4: "ring_side_right", 5: "ring_rear_left", 6: "ring_rear_right"},
    camera_axes="opencv",
    extrinsics="camera_to_ego",
    poses="ego_pose",
    world="first_ego",
    lidar=LidarLayout(columns=("x", "y", "z", "intensity"), frame="ego"),
    class_nodes={**{c: RIGID for c in _VEHICLES}, **{c: SMPL for c in _HUMANS}, **{c: DEFORMABLE for c in _DEFORMABLE}},
    undistort=False,
)
