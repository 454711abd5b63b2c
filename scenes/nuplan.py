"""nuPlan as drivestudio's datasets/nuplan/nuplan_preprocess.py writes it.

- cameras 0 CAM_F0, 1 CAM_L0, 2 CAM_R0, 3 CAM_L1, 4 CAM_R1, 5 CAM_L2, 6 CAM_R2, 7 CAM_B0;
- extrinsics/{cam}.txt: camera -> ego (the log's camera table), OpenCV axes;
- intrinsics/{cam}.txt: fx fy cx cy k1 k2 p1 p2 k3 with the camera's real distortion (drivestudio's
  nuPlan configs nevertheless leave undistort off);
- ego_pose/{t}.txt: ego -> world at the LiDAR sweep;
- lidar/{t}.bin: float32 N x 6 (x, y, z, intensity, ring, lidar id) in the ego frame;
- instance classes vehicle, pedestrian, bicycle.
"""
from .dataset_format import DEFORMABLE, RIGID, SMPL, DatasetFormat, LidarLayout

FORMAT = DatasetFormat(
    name="nuplan",
    title="nuPlan",
    cameras={0: "CAM_F0", 1: "CAM_L0", 2: "CAM_R0", 3: "CAM_L1", 4: "CAM_R1", 5: "CAM_L2", 6: "CAM_R2", 7: "CAM_B0"},
    camera_axes="opencv",
    extrinsics="camera_to_ego",
    poses="ego_pose",
    world="first_ego",
    lidar=LidarLayout(columns=("x", "y", "z", "intensity", "ring", "lidar_id"), frame="ego"),
    class_nodes={"vehicle": RIGID, "pedestrian": SMPL, "bicycle": DEFORMABLE},
    undistort=False,
)
