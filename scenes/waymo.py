"""Waymo Open Dataset as drivestudio's datasets/waymo/waymo_preprocess.py writes it.

- cameras 0 FRONT, 1 FRONT_LEFT, 2 FRONT_RIGHT, 3 SIDE_LEFT, 4 SIDE_RIGHT (proto id - 1); the
  calibration of all five is written whatever is loaded;
- extrinsics/{cam}.txt: camera -> vehicle, the camera frame in Waymo axes (x forward, y left, z up),
  so an OpenCV camera is extrinsic @ OPENCV_TO_DATASET (the only dataset that needs this);
- intrinsics/{cam}.txt: f_u f_v c_u c_v k1 k2 p1 p2 k3 (the calibration's own distortion);
  drivestudio's Waymo configs set undistort: True;
- ego_pose/{t}.txt: vehicle -> world; the LiDAR frame is the vehicle frame;
- lidar/{t}.bin: float32 N x 14 in the vehicle frame: ray origin (3), point (3), scene flow (3,
  velocity in m/s, vehicle axes), flow class, ground label, intensity, elongation, laser id;
- instance classes Vehicle, Pedestrian, Cyclist.
"""
from .dataset_format import DEFORMABLE, RIGID, SMPL, DatasetFormat, LidarLayout

FORMAT = DatasetFormat(
    name="waymo",
    title="Waymo Open Dataset",
    cameras={0: "FRONT", 1: "FRONT_LEFT", 2: "FRONT_RIGHT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT"},
    camera_axes="waymo",
    extrinsics="camera_to_ego",
    poses="ego_pose",
    world="first_ego",
    lidar=LidarLayout(columns=("origin_x", "origin_y", "origin_z", "x", "y", "z", "flow_x", "flow_y", "flow_z",
                               "flow_class", "ground", "intensity", "elongation", "laser_id"), frame="ego"),
    class_nodes={"Vehicle": RIGID, "Pedestrian": SMPL, "Cyclist": DEFORMABLE},
    undistort=True,
)
