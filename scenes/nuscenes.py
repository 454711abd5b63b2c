"""nuScenes as drivestudio's datasets/nuscenes/nuscenes_preprocess.py writes it.

- cameras 0 CAM_FRONT, 1 CAM_FRONT_LEFT, 2 CAM_FRONT_RIGHT, 3 CAM_BACK_LEFT, 4 CAM_BACK_RIGHT, 5 CAM_BACK;
- extrinsics/{t:03d}_{cam}.txt: camera -> world per frame (ego pose at the image's time @ camera ->
  ego), the camera in OpenCV axes (nuScenes' own); there is no ego_pose/;
- intrinsics/{cam}.txt: fx fy cx cy and five zeros (nuScenes images are undistorted);
- lidar/{t}.bin: float32 N x 4 (x, y, z, intensity) in the LIDAR_TOP sensor frame, with
  lidar_pose/{t}.txt = ego -> world @ lidar -> ego;
- drivestudio's world is camera 0 at the first frame (OpenCV axes); ours is the same place with the
  axes turned to x forward, y left, z up, like every other dataset's world;
- instance classes are nuScenes categories (vehicle.car, human.pedestrian.adult, ...); box_size is
  stored l, w, h.
"""
from .dataset_format import DEFORMABLE, RIGID, SMPL, DatasetFormat, LidarLayout

_VEHICLES = ("vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car", "vehicle.construction",
             "vehicle.emergency.ambulance", "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer",
             "vehicle.truck")
_HUMANS = ("human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
           "human.pedestrian.police_officer")
_DEFORMABLE = ("human.pedestrian.personal_mobility", "human.pedestrian.stroller", "human.pedestrian.wheelchair",
               "animal", "vehicle.bicycle")

FORMAT = DatasetFormat(
    name="nuscenes",
    title="nuScenes",
    cameras={0: "CAM_FRONT", 1: "CAM_FRONT_LEFT", 2: "CAM_FRONT_RIGHT", 3: "CAM_BACK_LEFT", 4: "CAM_BACK_RIGHT",
             5: "CAM_BACK"},
    camera_axes="opencv",
    extrinsics="camera_to_world",
    poses="lidar_pose",
    world="first_front_camera",
    lidar=LidarLayout(columns=("x", "y", "z", "intensity"), frame="lidar_pose"),
    class_nodes={**{c: RIGID for c in _VEHICLES}, **{c: SMPL for c in _HUMANS}, **{c: DEFORMABLE for c in _DEFORMABLE}},
    undistort=False,
)
