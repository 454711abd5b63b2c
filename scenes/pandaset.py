"""PandaSet as drivestudio's datasets/pandaset/pandaset_preprocess.py writes it.

- cameras 0 front_camera, 1 front_left_camera, 2 front_right_camera, 3 left_camera, 4 right_camera,
  5 back_camera;
- extrinsics/{t:03d}_{cam}.txt: camera -> world per frame (PandaSet's camera poses), OpenCV axes;
- intrinsics/{cam}.txt: fx fy cx cy and five zeros;
- ego_pose/{t}.txt: the LiDAR's pose (PandaSet has no ego pose), LiDAR -> world;
- lidar/{t}.bin: float32 N x 5 (x, y, z, intensity, laser id: 0 the 360-degree Pandar64, 1 the
  forward PandarGT) in that LiDAR frame;
- instance classes are PandaSet labels (Car, Pickup Truck, Pedestrian, ...); instances_info records
  also carry sibling_id and per-frame stationary flags.
"""
from .dataset_format import DEFORMABLE, RIGID, SMPL, DatasetFormat, LidarLayout

_VEHICLES = ("Bus", "Car", "Emergency Vehicle", "Medium-sized Truck", "Motorcycle", "Motorized Scooter",
             "Other Vehicle - Construction Vehicle", "Other Vehicle - Pedicab", "Other Vehicle - Uncommon",
             "Pickup Truck", "Semi-truck", "Train", "Tram / Subway")
_HUMANS = ("Pedestrian", "Pedestrian with Object")
_DEFORMABLE = ("Bicycle", "Animals - Other", "Personal Mobility Device")

FORMAT = DatasetFormat(
    name="pandaset",
    title="PandaSet",
    cameras={0: "front_camera", 1: "front_left_camera", 2: "front_right_camera", 3: "left_camera",
             4: "right_camera", 5: "back_camera"},
    camera_axes="opencv",
    extrinsics="camera_to_world",
    poses="ego_pose",
    world="first_ego",
    lidar=LidarLayout(columns=("x", "y", "z", "intensity", "laser_id"), frame="ego"),
    class_nodes={**{c: RIGID for c in _VEHICLES}, **{c: SMPL for c in _HUMANS}, **{c: DEFORMABLE for c in _DEFORMABLE}},
    undistort=False,
)
