"""KITTI (raw, tracking labels) as drivestudio's datasets/kitti/kitti_preprocess.py writes it.

- cameras 0 CAM_LEFT (image_02), 1 CAM_RIGHT (image_03);
- extrinsics/{cam}.txt: camera -> velodyne (inverse of T_cam2_velo / T_cam3_velo), OpenCV axes; the
  velodyne frame stands for the ego frame;
- intrinsics/{cam}.txt: fx fy cx cy and five zeros (rectified images);
- ego_pose/{t}.txt: written as T_w_imu @ T_velo_imu, which drivestudio calls velodyne -> world;
- lidar/{t}.bin: float32 N x 4 (x, y, z, reflectance) in the velodyne frame;
- instance classes Car, Van, Truck, Tram, Pedestrian, Person_sitting, Cyclist; boxes are moved from
  KITTI's bottom centre to the box centre and stored l, w, h.
"""
from .dataset_format import DEFORMABLE, RIGID, SMPL, DatasetFormat, LidarLayout

FORMAT = DatasetFormat(
    name="kitti",
    title="KITTI",
    cameras={0: "CAM_LEFT", 1: "CAM_RIGHT"},
    camera_axes="opencv",
    extrinsics="camera_to_ego",
    poses="ego_pose",
    world="first_ego",
    lidar=LidarLayout(columns=("x", "y", "z", "intensity"), frame="ego"),
    class_nodes={"Car": RIGID, "Van": RIGID, "Truck": RIGID, "Tram": RIGID, "Pedestrian": SMPL,
                 "Person_sitting": SMPL, "Cyclist": DEFORMABLE},
    undistort=False,
)
