"""Small scenes of each dataset written as drivestudio's preprocessors write them, with the truth.

One street (scenes/synthetic.py's ray caster) is rendered through each dataset's own sensor rig and
written with that dataset's conventions (github ziyc/drivestudio datasets/<name>/*_preprocess.py):

  dataset     cameras  extrinsics                         poses                 LiDAR file
  waymo       5        {cam}.txt cam->ego, Waymo axes     ego_pose/             N x 14, ego frame
  nuscenes    6        {t}_{cam}.txt cam->world, OpenCV   lidar_pose/ (no ego)  N x 4, sensor frame
  pandaset    6        {t}_{cam}.txt cam->world, OpenCV   ego_pose/ = LiDAR pose N x 5, LiDAR frame
  argoverse2  7        {cam}.txt cam->ego, OpenCV         ego_pose/             N x 4, ego frame
  kitti       2        {cam}.txt cam->velodyne, OpenCV    ego_pose/ = velodyne  N x 4, velodyne frame
  nuplan      8        {cam}.txt cam->ego, OpenCV         ego_pose/             N x 6, ego frame

Images are JPEGs, masks PNGs (sky_masks/, dynamic_masks/{all,human,vehicle}/ as 2D boxes of the
projected 3D boxes, fine_dynamic_masks/ as exact segmentation when asked), intrinsics nine numbers per
line with distortion for Waymo and nuPlan (the images are then recorded through that distortion),
instances keyed by integer ids with the dataset's class names and ids. The sensor mounts, LiDAR
frames and log worlds are chosen to differ between datasets so that a reader mixing conventions
lands somewhere else. `FixtureTruth` holds what the scene is, in the street frame (x along the
street, z up), independent of any reader.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from scenes.geometry import OPENCV_TO_DATASET, make_pose, rigid_inverse, rot_y, rot_z
from scenes.raycast import Caster
from scenes.synthetic import LIDAR_ORIGIN_EGO, Shader, SyntheticParams, build_street, render_camera, render_lidar
from scenes.undistort import distort_image

DATASETS = ("waymo", "nuscenes", "pandaset", "argoverse2", "kitti", "nuplan")

# Camera id -> yaw (degrees, left positive) of each dataset's rig, in its preprocessor's id order.
RIGS = {
    "waymo": [0, 45, -45, 90, -90],                          # FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT, SIDE_RIGHT
    "nuscenes": [0, 55, -55, 110, -110, 180],                # FRONT, FRONT_LEFT, FRONT_RIGHT, BACK_LEFT, BACK_RIGHT, BACK
    "pandaset": [0, 60, -60, 90, -90, 180],                  # front, front_left, front_right, left, right, back
    "argoverse2": [0, 45, -45, 90, -90, 153, -153],          # ring front_center, front_left, front_right, side_*, rear_*
    "kitti": [0, 0],                                         # CAM_LEFT, CAM_RIGHT (stereo, 0.54 m apart)
    "nuplan": [0, 50, -50, 100, -100, 140, -140, 180],       # F0, L0, R0, L1, R1, L2, R2, B0
}
CLASSES = {   # (first moving car, second moving car, a pedestrian track) as each dataset names them
    "waymo": ("Vehicle", "Vehicle", "Pedestrian"),
    "nuscenes": ("vehicle.car", "vehicle.truck", "human.pedestrian.adult"),
    "pandaset": ("Car", "Pickup Truck", "Pedestrian"),
    "argoverse2": ("REGULAR_VEHICLE", "BOX_TRUCK", "PEDESTRIAN"),
    "kitti": ("Car", "Van", "Pedestrian"),
    "nuplan": ("vehicle", "vehicle", "pedestrian"),
}
DISTORTION = {"waymo": [-0.16, 0.03, 0.0008, -0.0005, 0.0], "nuplan": [-0.12, 0.02, -0.0006, 0.0009, -0.002]}
LIDAR_YAW = {"nuscenes": -90.0, "pandaset": 90.0, "kitti": 0.0}   # sensor frames that are not the ego frame
KITTI_VELO = np.array([0.8, 0.0, 1.73])


@dataclass
class FixtureTruth:
    dataset: str
    root: Path
    cameras: list                     # str ids
    num_frames: int
    width: int
    height: int
    camera_to_street: dict            # (t, cam) -> [4, 4] OpenCV camera -> street
    depth: dict                       # (t, cam) -> [H, W] camera z (pinhole), inf for sky
    sky: dict                         # (t, cam) -> bool [H, W] (pinhole)
    dynamic: dict                     # (t, cam) -> bool [H, W] exact moving-vehicle pixels (pinhole)
    box_masks: dict                   # (t, cam) -> bool [H, W] drivestudio's 2D-box masks (pinhole)
    image: dict                       # (t, cam) -> float [H, W, 3] (pinhole)
    instance_points: dict             # t -> {instance key: indices of lidar/{t}.bin rows on that car}
    classes: dict                     # instance key -> class name
    distortion: list = field(default_factory=lambda: [0.0] * 5)


def _box_corners(pose: np.ndarray, size: np.ndarray) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
    return (signs * size / 2) @ pose[:3, :3].T + pose[:3, 3]


def _box_mask(corners_street, c2s, K, width, height) -> np.ndarray | None:
    """drivestudio's coarse mask: the 2D bounding rectangle of the projected corners, kept only when
    all eight are in front of the camera and inside the image."""
    cam = (corners_street - c2s[:3, 3]) @ c2s[:3, :3]
    if (cam[:, 2] <= 0.1).any():
        return None
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    if u.min() < 0 or u.max() >= width or v.min() < 0 or v.max() >= height:
        return None
    m = np.zeros((height, width), bool)
    m[int(v.min()):int(v.max()), int(u.min()):int(u.max())] = True
    return m


def _save_mask(path: Path, mask: np.ndarray):
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path)


def _save_txt(path: Path, values):
    np.savetxt(path, np.asarray(values, dtype=np.float64))    # drivestudio: np.savetxt, default format


def write_fixture(dataset: str, out: Path, num_frames: int = 4, width: int = 48, height: int = 32, seed: int = 3,
                  fine_masks: bool = False, sky_masks: bool = True) -> FixtureTruth:
    """Write one scene of `dataset` into `out` (created) and return its truth."""
    assert dataset in DATASETS, dataset
    out = Path(out)
    p = SyntheticParams(seed=seed, num_frames=num_frames, cameras=[0], width=width, height=height, ego_speed=1.0,
                        moving_cars=2, parked_cars=3, trees=3, poles=2, supersample=1, lidar_beams=16,
                        lidar_azimuths=240, fov_x_deg=80.0)
    street = build_street(p)
    rng = np.random.default_rng({n: i for i, n in enumerate(DATASETS)}[dataset] + 17)
    # Each dataset's log world: its own rigid offset from the street (as real logs are, in a city frame).
    log_from_street = make_pose(rot_z(rng.uniform(-np.pi, np.pi)), rng.uniform(-500, 500, 3) * [1, 1, 0.02])
    K = street.K[0]
    cams = [str(i) for i in range(len(RIGS[dataset]))]
    # Camera -> (synthetic) ego in OpenCV axes; the ego frame is x forward, y left, z up on the ground.
    cam_to_ego = {}
    for i, yaw in enumerate(RIGS[dataset]):
        y_off = -0.54 * i if dataset == "kitti" else 0.0
        mount = make_pose(rot_z(np.radians(yaw)) @ rot_y(np.radians(2.0)),
                          (1.5 * np.cos(np.radians(yaw)), 0.3 * np.sin(np.radians(yaw)) + y_off, 1.6))
        cam_to_ego[str(i)] = mount @ OPENCV_TO_DATASET
        street.extrinsics[i] = mount             # Waymo-axes camera for the renderer
        street.K[i] = K
    lidar_to_ego = make_pose(rot_z(np.radians(LIDAR_YAW.get(dataset, 0.0))),
                             KITTI_VELO if dataset == "kitti" else LIDAR_ORIGIN_EGO)
    # What the files call "ego": the vehicle (most), the LiDAR (PandaSet), the velodyne (KITTI).
    file_ego_to_ego = lidar_to_ego if dataset in ("pandaset", "kitti") else np.eye(4)

    for sub in ("images", "extrinsics", "intrinsics", "lidar", "sky_masks", "instances",
                "dynamic_masks/all", "dynamic_masks/human", "dynamic_masks/vehicle"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / ("lidar_pose" if dataset == "nuscenes" else "ego_pose")).mkdir()
    if fine_masks:
        for sub in ("all", "human", "vehicle"):
            (out / "fine_dynamic_masks" / sub).mkdir(parents=True)

    dist = DISTORTION.get(dataset, [0.0] * 5)
    caster = Caster(street.groups)
    shader = Shader(street, caster)
    movers = street.moving_vehicles()
    truth = FixtureTruth(dataset=dataset, root=out, cameras=cams, num_frames=num_frames, width=width, height=height,
                         camera_to_street={}, depth={}, sky={}, dynamic={}, box_masks={}, image={},
                         instance_points={}, classes={}, distortion=list(dist))

    for t in range(num_frames):
        ego_to_street = street.ego_street[t]
        ego_to_log = log_from_street @ ego_to_street
        for c in cams:
            c2s = ego_to_street @ cam_to_ego[c]
            fr = render_camera(street, caster, shader, t, int(c))
            key = (t, c)
            truth.camera_to_street[key] = c2s
            truth.depth[key], truth.sky[key], truth.dynamic[key] = fr.depth, fr.sky, fr.dynamic
            truth.image[key] = fr.image
            box = np.zeros((height, width), bool)
            for v in movers:
                m = _box_mask(_box_corners(v.poses[t], v.size), c2s, K, width, height)
                if m is not None:
                    box |= m
            truth.box_masks[key] = box
            img = np.round(np.clip(fr.image, 0, 1) * 255).astype(np.uint8)
            sky, dyn, fine = fr.sky, box, fr.dynamic
            if any(dist):   # the camera records through its lens
                img = distort_image(img, K, dist)
                sky, dyn, fine = (distort_image(m, K, dist) for m in (sky, dyn, fine))
            name = f"{t:03d}_{c}"
            Image.fromarray(img).save(out / "images" / f"{name}.jpg", quality=95)
            if sky_masks:
                _save_mask(out / "sky_masks" / f"{name}.png", sky)
            _save_mask(out / "dynamic_masks" / "all" / f"{name}.png", dyn)
            _save_mask(out / "dynamic_masks" / "vehicle" / f"{name}.png", dyn)
            _save_mask(out / "dynamic_masks" / "human" / f"{name}.png", np.zeros_like(dyn))
            if fine_masks:
                _save_mask(out / "fine_dynamic_masks" / "all" / f"{name}.png", fine)
                _save_mask(out / "fine_dynamic_masks" / "vehicle" / f"{name}.png", fine)
                _save_mask(out / "fine_dynamic_masks" / "human" / f"{name}.png", np.zeros_like(fine))
            if dataset in ("nuscenes", "pandaset"):
                _save_txt(out / "extrinsics" / f"{name}.txt", ego_to_log @ cam_to_ego[c])
        if dataset == "nuscenes":
            _save_txt(out / "lidar_pose" / f"{t:03d}.txt", ego_to_log @ lidar_to_ego)
        else:
            _save_txt(out / "ego_pose" / f"{t:03d}.txt", ego_to_log @ file_ego_to_ego)

        # LiDAR: the synthetic ego-frame returns, moved into the file's frame with the file's columns.
        raw = render_lidar(street, caster, shader, t)              # [N, 14] in the synthetic ego frame
        pts_ego = raw[:, 3:6].astype(np.float64)
        moving = np.linalg.norm(raw[:, 6:9], axis=1) > 0
        world_pts = pts_ego @ ego_to_street[:3, :3].T + ego_to_street[:3, 3]
        truth.instance_points[t] = {}
        for k, v in enumerate(movers):
            local = (world_pts - v.poses[t][:3, 3]) @ v.poses[t][:3, :3]
            inside = moving & (np.abs(local) <= v.size / 2 + 1e-3).all(axis=1)
            truth.instance_points[t][k] = np.nonzero(inside)[0]
        if dataset == "waymo":
            data = raw
        else:
            frame_from_ego = rigid_inverse(lidar_to_ego if dataset in ("nuscenes", "pandaset", "kitti") else np.eye(4))
            xyz = pts_ego @ frame_from_ego[:3, :3].T + frame_from_ego[:3, 3]
            intensity = raw[:, 11:12] * (255.0 if dataset == "pandaset" else 1.0)
            extra = {"nuscenes": [intensity], "argoverse2": [intensity], "kitti": [intensity],
                     "pandaset": [intensity, np.zeros((len(raw), 1))],                       # laser id 0: Pandar64
                     "nuplan": [intensity, (np.arange(len(raw)) % p.lidar_beams)[:, None],  # ring, lidar id
                                np.zeros((len(raw), 1))]}[dataset]
            data = np.column_stack([xyz, *extra])
        data.astype(np.float32).tofile(out / "lidar" / f"{t:03d}.bin")

    for c in cams:
        if dataset not in ("nuscenes", "pandaset"):
            stored = cam_to_ego[c]
            if dataset == "waymo":
                stored = stored @ rigid_inverse(OPENCV_TO_DATASET)           # Waymo's camera axes
            if dataset == "kitti":
                stored = rigid_inverse(file_ego_to_ego) @ stored              # camera -> velodyne
            _save_txt(out / "extrinsics" / f"{c}.txt", stored)
        _save_txt(out / "intrinsics" / f"{c}.txt", [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *dist])

    _write_instances(dataset, out, movers, log_from_street, num_frames, truth, rng)
    return truth


def _write_instances(dataset, out, movers, log_from_street, T, truth, rng):
    """instances_info.json / frame_instances.json as the preprocessors leave them after their
    "Correct ID mapping": keys 0..N-1, "id" the source's own, frame lists of integer keys."""
    car_a, car_b, person = CLASSES[dataset]
    records = []
    for k, v in enumerate(movers):
        records.append(((car_a, car_b)[k % 2], [log_from_street @ v.poses[t] for t in range(T)],
                        [v.size.tolist()] * T, list(range(T))))
    # A pedestrian walking on the far sidewalk (no geometry: only its class matters here).
    ped = [log_from_street @ make_pose(np.eye(3), (movers[0].poses[0][0, 3] + 0.8 * t, -8.0, 0.9)) for t in range(T)]
    records.append((person, ped, [[0.6, 0.6, 1.8]] * T, list(range(T))))
    source_ids = {"waymo": lambda i: "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789-_"), 22)),
                  "kitti": lambda i: i + 3,
                  }.get(dataset, lambda i: "".join(rng.choice(list("0123456789abcdef"), 32)))
    info, frames = {}, {t: [] for t in range(T)}
    for key, (cls, poses, sizes, fidx) in enumerate(records):
        rec = {"id": source_ids(key), "class_name": cls,
               "frame_annotations": {"frame_idx": fidx, "obj_to_world": [m.tolist() for m in poses], "box_size": sizes}}
        if dataset == "pandaset":
            rec["sibling_id"] = "-"
            rec["frame_annotations"]["stationary"] = [False] * len(fidx)
        info[key] = rec
        truth.classes[key] = cls
        for t in fidx:
            frames[t].append(key)
    (out / "instances" / "instances_info.json").write_text(json.dumps(info, indent=4))
    (out / "instances" / "frame_instances.json").write_text(json.dumps(frames, indent=4))
