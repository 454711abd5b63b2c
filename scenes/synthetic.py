"""Procedural street scenes with exact geometry, written in drivestudio's processed layout.

The street runs along +x of a "street frame" (x forward, y left, z up, ground at z = 0). Everything
is built from boxes (see raycast.py), so the ground-truth mesh is exactly what is rendered. The ego
vehicle drives along the right lane; files are written in a "log world" that differs from the
street frame by a seeded rigid transform, as real logs do, so the loader's alignment to the first
ego frame is exercised.

Output (one folder): images/, ego_pose/, extrinsics/, intrinsics/, lidar/, sky_masks/,
dynamic_masks/{all,human,vehicle}/, instances/, and gt/ (static_mesh.ply in the first ego frame,
vehicles/<id>.ply in each object's frame, depth/<t>_<cam>.npy camera z-depth with inf for sky).
Camera imperfections (pose noise and drift, exposure, white balance, vignetting; all off by default)
are drawn from their own seeded generator and recorded in gt/imperfections.json
(scenes/camera_imperfections.py; scenes/imperfections.py reads it back).
The files are Waymo's format as drivestudio's waymo_preprocess.py writes it (scenes/waymo.py), with
instances_info.json / frame_instances.json keyed by integer ids as its readers require. drivestudio's
reader opens images/{t}_{cam}.jpg only: generate with image_format=jpg for a scene it can load.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import textures as tx
from .camera_imperfections import (IMPERFECTION_KEYS, IMPERFECTIONS_FILE, CameraImperfections, draw_imperfections,
                                   write_imperfections)
from .geometry import OPENCV_TO_DATASET, intrinsics_matrix, make_pose, pixel_rays, rigid_inverse, rot_y, rot_z
from .mesh import MeshBuilder
from .people import FLOW_CLASS, PEOPLE_FILE, PEOPLE_KEYS, build_people, check_people_keys, people_truth, point_velocity
from .raycast import Caster, Group, Hits

GENERATOR_VERSION = 2   # 2: drivestudio's instance ids (integers) and dynamic_masks/human
COMPLETE_MARKER = ".complete.json"

# Waymo camera ids as drivestudio names them in file names: 0 FRONT, 1 FRONT_LEFT, 2 FRONT_RIGHT,
# 3 SIDE_LEFT, 4 SIDE_RIGHT
CAMERA_MOUNTS = {
    0: dict(translation=(1.6, 0.0, 1.55), yaw_deg=0.0),
    1: dict(translation=(1.5, 0.35, 1.55), yaw_deg=55.0),
    2: dict(translation=(1.5, -0.35, 1.55), yaw_deg=-55.0),
    3: dict(translation=(1.2, 0.9, 1.55), yaw_deg=100.0),
    4: dict(translation=(1.2, -0.9, 1.55), yaw_deg=-100.0),
}
CAMERA_NAMES = {0: "FRONT", 1: "FRONT_LEFT", 2: "FRONT_RIGHT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT"}
CAMERA_ALIASES = {name.lower(): c for c, name in CAMERA_NAMES.items()}

ROAD_HALF = 6.0        # asphalt, including the parking strips
LANE_HALF = 3.5        # two driving lanes
SIDEWALK_OUT = 9.0     # sidewalk from ROAD_HALF to here
CURB = 0.15
STREET_END = 170.0
CROSSWALK_X = 36.0
LIDAR_ORIGIN_EGO = np.array([1.0, 0.0, 2.1])
STREET_LAYOUT = dict(road_half=ROAD_HALF, lane_half=LANE_HALF, sidewalk_out=SIDEWALK_OUT, curb=CURB,
                     street_end=STREET_END, crosswalk_x=CROSSWALK_X)

@dataclass
class SyntheticParams:
    seed: int = 0
    num_frames: int = 24
    cameras: list = field(default_factory=lambda: [0, 1, 2])
    width: int = 160
    height: int = 96
    fov_x_deg: float = 72.0
    camera_pitch_deg: float = 3.0
    ego_speed: float = 0.75          # metres per frame
    frame_rate: float = 10.0         # Hz
    moving_cars: int = 1
    parked_cars: int = 6
    trees: int = 6
    poles: int = 4
    supersample: int = 2             # colour samples per pixel side (depth and masks: pixel centres)
    lidar_beams: int = 32
    lidar_azimuths: int = 720
    lidar_max_range: float = 80.0
    lidar_elevation_deg: tuple = (-22.0, 6.0)
    image_format: str = "png"
    # Camera imperfections (IMPERFECTION_KEYS): 0 = off, the default.
    pose_noise_m: float = 0.0
    pose_noise_deg: float = 0.0
    pose_drift_m: float = 0.0
    exposure_gain: float = 0.0
    exposure_frame_gain: float = 0.0
    white_balance: float = 0.0
    vignetting: float = 0.0
    # People (PEOPLE_KEYS, scenes/people.py): 0 = none, the default.
    pedestrians: int = 0
    cyclists: int = 0

    def __post_init__(self):
        cams = []
        for c in self.cameras:
            c = CAMERA_ALIASES.get(str(c), c)
            try:
                c = int(c)
            except (TypeError, ValueError):
                raise ValueError(f"scene.cameras: unknown camera {c!r}; expected ids {sorted(CAMERA_MOUNTS)} or names "
                                 f"{sorted(CAMERA_ALIASES)}") from None
            if c not in CAMERA_MOUNTS:
                raise ValueError(f"scene.cameras: unknown camera {c!r}; expected ids {sorted(CAMERA_MOUNTS)}")
            cams.append(c)
        self.cameras = cams
        self.lidar_elevation_deg = tuple(float(x) for x in self.lidar_elevation_deg)
        if self.num_frames < 1 or self.width < 8 or self.height < 8 or self.supersample < 1:
            raise ValueError("scene: num_frames >= 1, width/height >= 8 and supersample >= 1 expected; got "
                             f"num_frames={self.num_frames}, width={self.width}, height={self.height}, "
                             f"supersample={self.supersample}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"scene.image_format: expected 'png' or 'jpg', got {self.image_format!r}")
        bad = []
        for key, (default, upper, meaning) in IMPERFECTION_KEYS.items():
            value = getattr(self, key)
            expected = f"a number >= 0 and < {upper:g} ({meaning})" if upper is not None else \
                f"a number >= 0 ({meaning})"
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
            if isinstance(value, bool) or number is None or not np.isfinite(number) or number < 0 \
                    or (upper is not None and number >= upper):
                bad.append(f"scene.{key}: expected {expected}, got {value!r}")
            else:
                setattr(self, key, number)
        bad += check_people_keys(self)
        if bad:
            raise ValueError("; ".join(bad))

    def identity(self) -> dict:
        """The keys that make the scene: every field, less the imperfection and people keys at their defaults."""
        d = asdict(self)
        for key, (default, _, _) in IMPERFECTION_KEYS.items():
            if d[key] == default:
                del d[key]
        for key in PEOPLE_KEYS:
            if d[key] == 0:
                del d[key]
        return d

    def digest(self) -> str:
        blob = json.dumps({"version": GENERATOR_VERSION, **self.identity()}, sort_keys=True, default=list)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @property
    def pose_imperfect(self) -> bool:
        return any(getattr(self, k) != IMPERFECTION_KEYS[k][0]
                   for k in ("pose_noise_m", "pose_noise_deg", "pose_drift_m"))

    @property
    def exposure_imperfect(self) -> bool:
        return any(getattr(self, k) != IMPERFECTION_KEYS[k][0]
                   for k in ("exposure_gain", "exposure_frame_gain", "white_balance", "vignetting"))


@dataclass
class Vehicle:
    id: str
    size: np.ndarray          # [l, w, h]
    poses: np.ndarray         # [T, 4, 4] object (box centre) -> street
    moving: bool
    group: Group


@dataclass
class StreetScene:
    """The generated scene in memory: geometry, sensors and the transforms between frames."""

    params: SyntheticParams
    groups: list
    vehicles: list
    ego_street: np.ndarray            # [T, 4, 4] ego -> street
    log_from_street: np.ndarray       # [4, 4]
    extrinsics: dict                  # cam -> [4,4] camera (Waymo axes) -> ego
    K: dict                           # cam -> [3,3]
    static_parts: list = field(default_factory=list)  # (lo, hi, pose_or_None, skip) for the GT mesh
    imperfections: "CameraImperfections | None" = None  # None: exact poses and images
    people: list = field(default_factory=list)        # scenes.people.Figure: pedestrians, then cyclists

    @property
    def first_ego_from_street(self) -> np.ndarray:
        return rigid_inverse(self.ego_street[0])

    def camera_to_street(self, t: int, cam: int) -> np.ndarray:
        """OpenCV camera -> street frame."""
        return self.ego_street[t] @ self.extrinsics[cam] @ OPENCV_TO_DATASET

    def camera_to_world(self, t: int, cam: int) -> np.ndarray:
        """OpenCV camera -> world of the first ego frame (what the loader must reproduce)."""
        return self.first_ego_from_street @ self.camera_to_street(t, cam)

    def moving_vehicles(self) -> list:
        return [v for v in self.vehicles if v.moving]

    def person_groups(self) -> np.ndarray:
        """bool [groups]: which groups are pieces of people (pedestrians, cyclists and their bikes)."""
        ids = {id(g) for f in self.people for g in f.groups}
        return np.array([id(g) in ids for g in self.groups])


# ----------------------------------------------------------------------------------------------
# Layout


def _car_parts(length: float, width: float, height: float):
    """Boxes of a car in its object frame (origin at the box centre, x forward, z up)."""
    hl, hw, hh = length / 2, width / 2, height / 2
    body_top = -hh + 0.82
    parts = [
        ((-hl, -hw, -hh + 0.30), (hl, hw, body_top), tx.CAR_BODY),
        ((-hl + 0.25 * length - 0.2, -hw + 0.1, body_top), (hl - 0.3 * length + 0.2, hw - 0.1, hh - 0.03), tx.CAR_CABIN),
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx = sx * (hl - 0.85)
            y0, y1 = (hw - 0.28, hw - 0.02) if sy > 0 else (-hw + 0.02, -hw + 0.28)
            parts.append(((cx - 0.33, y0, -hh), (cx + 0.33, y1, -hh + 0.55), tx.WHEEL))
    return parts


def _make_group(name, parts, albedos, params, poses=None, instance=-1) -> Group:
    lo = np.array([p[0] for p in parts], np.float64)
    hi = np.array([p[1] for p in parts], np.float64)
    return Group(name=name, lo=lo, hi=hi, material=np.array([p[2] for p in parts]),
                 albedo=np.asarray(albedos, np.float64).reshape(len(parts), 3),
                 param=np.asarray(params, np.float64).reshape(len(parts)), poses=poses, instance=instance)


CAR_COLOURS = np.array([[0.75, 0.1, 0.08], [0.1, 0.2, 0.55], [0.85, 0.85, 0.82], [0.12, 0.12, 0.13],
                        [0.55, 0.57, 0.6], [0.2, 0.45, 0.25], [0.85, 0.6, 0.1], [0.35, 0.2, 0.12]])
FACADE_COLOURS = np.array([[0.62, 0.27, 0.2], [0.72, 0.62, 0.48], [0.55, 0.55, 0.58], [0.8, 0.76, 0.66],
                           [0.45, 0.32, 0.27], [0.6, 0.66, 0.7], [0.78, 0.55, 0.4]])


def build_street(params: SyntheticParams) -> StreetScene:
    rng = np.random.default_rng(params.seed)
    T = params.num_frames
    static_parts = []   # (lo, hi, material, albedo, param)

    def add_static(lo, hi, material, albedo, param=0.0):
        static_parts.append((np.asarray(lo, float), np.asarray(hi, float), material, np.asarray(albedo, float), float(param)))

    add_static((-60, -90, -1), (STREET_END + 40, 90, 0), tx.GROUND, (0.3, 0.3, 0.3))
    for s in (1, -1):
        y0, y1 = sorted((s * ROAD_HALF, s * SIDEWALK_OUT))
        add_static((-60, y0, 0), (STREET_END, y1, CURB), tx.SIDEWALK, (0.6, 0.6, 0.6))
    # Façades on both sides, a taller back row, and a building closing the street.
    for s in (1, -1):
        x = -30.0
        while x < STREET_END - 4:
            length = min(rng.uniform(8, 18), STREET_END - x)
            setback = rng.uniform(0, 1.5)
            depth = rng.uniform(8, 14)
            height = rng.uniform(7, 20)
            y0, y1 = sorted((s * (SIDEWALK_OUT + setback), s * (SIDEWALK_OUT + setback + depth)))
            add_static((x, y0, 0), (x + length, y1, height), tx.FACADE,
                       FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * rng.uniform(0.9, 1.1), rng.uniform())
            x += length + (rng.uniform(1.5, 4) if rng.uniform() < 0.35 else 0.0)
        x = -30.0
        while x < STREET_END - 4:
            length = min(rng.uniform(25, 45), STREET_END - x)
            y0, y1 = sorted((s * 32.0, s * 40.0))
            add_static((x, y0, 0), (x + length, y1, rng.uniform(14, 26)), tx.FACADE,
                       FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * 0.9, rng.uniform())
            x += length
    add_static((STREET_END, -40, 0), (STREET_END + 15, 40, 18), tx.FACADE, (0.7, 0.66, 0.6), 0.6)

    # Trees and poles on the sidewalks, spaced along the first 100 m.
    slots = rng.permutation(np.arange(2, 100, 7.0))
    k = 0
    for i in range(params.trees):
        s = 1 if i % 2 == 0 else -1
        x = slots[k % len(slots)] + rng.uniform(-1, 1); k += 1
        y = s * 7.6
        add_static((x - 0.15, y - 0.15, CURB), (x + 0.15, y + 0.15, 2.7), tx.TRUNK, (0.35, 0.25, 0.16))
        g = np.array([0.2, 0.42, 0.15]) * rng.uniform(0.8, 1.2)
        add_static((x - 1.3, y - 1.3, 2.6), (x + 1.3, y + 1.3, 4.3), tx.LEAVES, g)
        add_static((x - 0.8, y - 0.8, 4.3), (x + 0.8, y + 0.8, 5.3), tx.LEAVES, g * 1.1)
    for i in range(params.poles):
        s = -1 if i % 2 == 0 else 1
        x = slots[k % len(slots)] + rng.uniform(-1, 1); k += 1
        y = s * 6.5
        add_static((x - 0.09, y - 0.09, CURB), (x + 0.09, y + 0.09, 6.2), tx.POLE, (0.5, 0.52, 0.55))
        ya, yb = sorted((y, y - s * 1.6))
        add_static((x - 0.06, ya, 5.95), (x + 0.06, yb, 6.1), tx.POLE, (0.5, 0.52, 0.55))

    groups = [_make_group("static", [(p[0], p[1], p[2]) for p in static_parts],
                          [p[3] for p in static_parts], [p[4] for p in static_parts])]
    # Parts of the GT static mesh; faces resting on the ground or the sidewalk, and the ground's
    # sides and bottom, can never be seen and are left out.
    mesh_parts = []
    for lo, hi, mat, _, _ in static_parts:
        skip = (0, 1, 2, 3, 4) if mat == tx.GROUND else ((4,) if lo[2] in (0.0, CURB) else ())
        mesh_parts.append((lo, hi, None, skip))

    vehicles = []
    # Parked cars: static, part of the background (not instances).
    taken = []
    for i in range(params.parked_cars):
        s = -1 if i % 2 == 0 else 1
        for _ in range(50):
            x = rng.uniform(4, 80)
            if all(abs(x - tx_) > 6.5 for ts, tx_ in taken if ts == s):
                break
        taken.append((s, x))
        size = np.array([rng.uniform(4.2, 4.8), rng.uniform(1.8, 1.95), rng.uniform(1.45, 1.6)])
        pose = make_pose(rot_z(0.0 if s < 0 else np.pi), (x, s * 4.75, size[2] / 2))
        parts = _car_parts(*size)
        colour = CAR_COLOURS[rng.integers(len(CAR_COLOURS))]
        g = _make_group(f"parked_{i}", parts, [colour] * len(parts), [rng.uniform()] * len(parts),
                        poses=np.repeat(pose[None], T, 0))
        groups.append(g)
        for lo, hi, _ in parts:
            mesh_parts.append((np.array(lo), np.array(hi), pose, ()))
        vehicles.append(Vehicle(id=f"parked_{i}", size=size, poses=g.poses, moving=False, group=g))

    # Moving cars on straight tracks: even ones oncoming in the left lane, odd ones ahead in the ego lane.
    ego_x0 = 0.0
    ego_y = -LANE_HALF / 2
    inst = 0
    for i in range(params.moving_cars):
        size = np.array([rng.uniform(4.2, 4.8), rng.uniform(1.8, 1.95), rng.uniform(1.45, 1.6)])
        if i % 2 == 0:
            x0 = ego_x0 + 28 + 14 * (i // 2)
            v, y, yaw = -rng.uniform(0.6, 0.9), LANE_HALF / 2, np.pi
        else:
            x0 = ego_x0 + 11 + 12 * (i // 2)
            v, y, yaw = params.ego_speed + rng.uniform(0.15, 0.35), ego_y, 0.0
        poses = np.stack([make_pose(rot_z(yaw), (x0 + v * t, y, size[2] / 2)) for t in range(T)])
        parts = _car_parts(*size)
        colour = CAR_COLOURS[rng.integers(len(CAR_COLOURS))]
        g = _make_group(f"vehicle_{inst}", parts, [colour] * len(parts), [rng.uniform()] * len(parts),
                        poses=poses, instance=inst)
        groups.append(g)
        vehicles.append(Vehicle(id=str(inst), size=size, poses=poses, moving=True, group=g))
        inst += 1
    people = build_people(params, STREET_LAYOUT, inst)   # their own generators: the draws above are unchanged
    groups += [g for f in people for g in f.groups]

    ego_street = np.stack([make_pose(np.eye(3), (ego_x0 + params.ego_speed * t, ego_y, 0.0)) for t in range(T)])
    log_from_street = make_pose(rot_z(rng.uniform(-np.pi, np.pi)),
                                (rng.uniform(-300, 300), rng.uniform(-300, 300), rng.uniform(-5, 5)))
    focal = (params.width / 2) / np.tan(np.radians(params.fov_x_deg) / 2)
    K = {c: intrinsics_matrix(focal, focal, params.width / 2, params.height / 2) for c in params.cameras}
    extrinsics = {}
    for c in params.cameras:
        m = CAMERA_MOUNTS[c]
        extrinsics[c] = make_pose(rot_z(np.radians(m["yaw_deg"])) @ rot_y(np.radians(params.camera_pitch_deg)),
                                  m["translation"])
    return StreetScene(params=params, groups=groups, vehicles=vehicles, ego_street=ego_street,
                       log_from_street=log_from_street, extrinsics=extrinsics, K=K, static_parts=mesh_parts,
                       imperfections=draw_imperfections(params, CAMERA_MOUNTS), people=people)


# ----------------------------------------------------------------------------------------------
# Shading


class Shader:
    def __init__(self, scene: StreetScene, caster: Caster):
        self.scene = scene
        self.caster = caster
        gs = scene.groups
        self.lo = np.concatenate([g.lo for g in gs]); self.hi = np.concatenate([g.hi for g in gs])
        self.material = np.concatenate([g.material for g in gs])
        self.albedo = np.concatenate([g.albedo for g in gs]); self.param = np.concatenate([g.param for g in gs])
        self.has_pose = np.array([g.poses is not None for g in gs])
        self.person = scene.person_groups()
        # LiDAR flow class of a person's group (Waymo's: 2 pedestrian, 4 cyclist), 0 elsewhere
        self.person_class = np.zeros(len(gs), np.float32)
        slot = {id(g): k for k, g in enumerate(gs)}
        for f in scene.people:
            self.person_class[[slot[id(g)] for g in f.groups]] = FLOW_CLASS[f.class_name]

    def surface(self, frame: int, origin: np.ndarray, dirs: np.ndarray, hits: Hits):
        """Flattened hit records: index, world point, local point, world normal, part, face."""
        t = hits.t.reshape(-1); part = hits.part.reshape(-1); face = hits.face.reshape(-1)
        idx = np.nonzero(part >= 0)[0]
        d = dirs.reshape(-1, 3)[idx]
        pw = origin + t[idx, None] * d
        part = part[idx]; face = face[idx]
        gid = self.caster.part_group(part)
        axis = face // 2; sign = np.where(face % 2 == 1, 1.0, -1.0)
        pl = pw.copy(); nw = np.eye(3)[axis] * sign[:, None]
        moving = np.nonzero(self.has_pose[gid])[0]
        sub_gid = gid[moving]
        for g in np.unique(sub_gid):
            m = moving[sub_gid == g]
            pose = self.scene.groups[g].pose(frame)
            pl[m] = (pw[m] - pose[:3, 3]) @ pose[:3, :3]
            nw[m] = pose[:3, :3][:, axis[m]].T * sign[m, None]
        return idx, pw, pl, nw, part, face, gid

    def shade(self, frame: int, origin: np.ndarray, dirs: np.ndarray, hits: Hits) -> np.ndarray:
        shape = hits.t.shape
        dirs_flat = dirs.reshape(-1, 3)
        out = np.empty((len(dirs_flat), 3))
        miss = hits.part.reshape(-1) < 0
        if miss.any():
            d = dirs_flat[miss]
            out[miss] = tx.sky(d / np.linalg.norm(d, axis=1, keepdims=True))
        idx, pw, pl, nw, part, face, gid = self.surface(frame, origin, dirs, hits)
        if len(idx) == 0:
            return out.reshape(*shape, 3)
        mat = self.material[part]; alb = self.albedo[part]; prm = self.param[part]
        axis = face // 2; positive = face % 2 == 1
        col = np.zeros((len(idx), 3))
        m = mat == tx.GROUND
        col[m] = tx.ground(pw[m], ROAD_HALF, LANE_HALF, CROSSWALK_X)
        m = mat == tx.SIDEWALK
        col[m] = tx.sidewalk(pw[m], axis[m])
        m = (mat == tx.FACADE) & (axis != 2)
        u = np.where(axis[m] == 0, pw[m, 1], pw[m, 0])
        col[m] = tx.facade(u, pw[m, 2], alb[m], prm[m])
        m = (mat == tx.FACADE) & (axis == 2)
        n = tx.fbm(pw[m, 0] * 0.7, pw[m, 1] * 0.7, 7)
        col[m] = np.stack([0.33 + 0.1 * n, 0.31 + 0.1 * n, 0.30 + 0.1 * n], -1)
        m = mat == tx.CAR_BODY
        col[m] = tx.car_body(pl[m], axis[m], positive[m], alb[m])
        m = mat == tx.CAR_CABIN
        col[m] = tx.car_cabin(pl[m], axis[m], alb[m], self.lo[part[m]], self.hi[part[m]])
        m = mat == tx.WHEEL
        col[m] = np.array([0.06, 0.06, 0.07])
        m = mat == tx.TRUNK
        col[m] = alb[m] * (0.8 + 0.4 * tx.fbm(pw[m, 2] * 4, pw[m, 0] + pw[m, 1], 13))[:, None]
        m = mat == tx.LEAVES
        col[m] = tx.leaves(pw[m], alb[m])
        m = mat == tx.POLE
        col[m] = alb[m]
        m = mat == tx.CLOTH
        col[m] = tx.cloth(pl[m], alb[m])
        m = (mat == tx.SKIN) | (mat == tx.BIKE)
        col[m] = alb[m]
        # Lambert + ambient, and a little darkening of walls near the ground (ambient occlusion).
        light = 0.5 + 0.5 * np.clip(nw @ tx.SUN, 0, 1)
        ao = 1.0 - 0.3 * np.exp(-np.maximum(pw[:, 2], 0) / 0.5) * (np.abs(nw[:, 2]) < 0.5)
        out[idx] = np.clip(col * (light * ao)[:, None], 0, 1)
        return out.reshape(*shape, 3)


# ----------------------------------------------------------------------------------------------
# Sensors


@dataclass
class CameraFrame:
    image: np.ndarray        # [H, W, 3] float in [0, 1]
    depth: np.ndarray        # [H, W] camera z-depth, inf for sky
    sky: np.ndarray          # [H, W] bool
    dynamic: np.ndarray      # [H, W] bool: every moving instance (vehicles and people)
    human: np.ndarray        # [H, W] bool: people (pedestrians, cyclists and their bikes)


def render_camera(scene: StreetScene, caster: Caster, shader: Shader, t: int, cam: int) -> CameraFrame:
    p = scene.params
    K = scene.K[cam]
    c2s = scene.camera_to_street(t, cam)
    origin = c2s[:3, 3]
    ss = p.supersample
    dirs_c = pixel_rays(K, p.width, p.height, 1)
    hits_c = caster.cast_pinhole(t, origin, c2s, K, dirs_c, 1)
    if ss == 1:
        colour = shader.shade(t, origin, dirs_c @ c2s[:3, :3].T, hits_c)
    else:
        dirs_s = pixel_rays(K, p.width, p.height, ss)
        hits_s = caster.cast_pinhole(t, origin, c2s, K, dirs_s, ss)
        colour = shader.shade(t, origin, dirs_s @ c2s[:3, :3].T, hits_s)
        colour = colour.reshape(p.height, ss, p.width, ss, 3).mean(axis=(1, 3))
    sky = hits_c.part < 0
    gid = np.where(sky, 0, caster.part_group(np.maximum(hits_c.part, 0)))
    inst = np.array([g.instance for g in scene.groups])
    dynamic = ~sky & (inst[gid] >= 0)
    human = ~sky & shader.person[gid]
    return CameraFrame(image=colour, depth=hits_c.t.astype(np.float32), sky=sky, dynamic=dynamic, human=human)


def lidar_directions(p: SyntheticParams):
    elev = np.radians(np.linspace(p.lidar_elevation_deg[0], p.lidar_elevation_deg[1], p.lidar_beams))
    az = (np.arange(p.lidar_azimuths) + 0.5) * (2 * np.pi / p.lidar_azimuths) - np.pi
    ee, aa = np.meshgrid(elev, az, indexing="ij")
    dirs = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], -1)
    return dirs, az


def render_lidar(scene: StreetScene, caster: Caster, shader: Shader, t: int) -> np.ndarray:
    """[N, 14] float32 in the ego frame: origin, point, flow, flow class, ground, intensity, elongation, laser id."""
    p = scene.params
    ego = scene.ego_street[t]
    dirs_ego, az_ego = lidar_directions(p)
    dirs = dirs_ego @ ego[:3, :3].T
    yaw = np.arctan2(ego[1, 0], ego[0, 0])
    origin = ego[:3, :3] @ LIDAR_ORIGIN_EGO + ego[:3, 3]
    hits = caster.cast_spherical(t, origin, dirs, np.angle(np.exp(1j * (az_ego + yaw))))
    keep = (hits.part >= 0) & (hits.t <= p.lidar_max_range)
    hits = Hits(np.where(keep, hits.t, np.inf), np.where(keep, hits.part, -1), hits.face)
    idx, pw, pl, nw, part, face, gid = shader.surface(t, origin, dirs, hits)
    rng_t = hits.t.reshape(-1)[idx]
    pts_ego = LIDAR_ORIGIN_EGO + rng_t[:, None] * dirs_ego.reshape(-1, 3)[idx]
    n = len(idx)
    out = np.zeros((n, 14), np.float32)
    out[:, 0:3] = LIDAR_ORIGIN_EGO
    out[:, 3:6] = pts_ego
    # Scene flow: velocity (m/s) of the hit surface in the world, expressed in ego axes.
    T = p.num_frames
    for g in np.unique(gid):
        grp = scene.groups[g]
        if grp.instance < 0:
            continue
        if shader.person[g]:   # a limb turns: each point's own velocity
            sel = gid == g
            out[sel, 6:9] = point_velocity(grp.poses, t, pl[sel], p.frame_rate) @ ego[:3, :3]
            continue
        a, b = (t, t + 1) if t + 1 < T else (max(t - 1, 0), t)
        vel = (grp.poses[b][:3, 3] - grp.poses[a][:3, 3]) * p.frame_rate
        out[gid == g, 6:9] = ego[:3, :3].T @ vel
    mat = shader.material[part]
    is_car = np.isin(mat, (tx.CAR_BODY, tx.CAR_CABIN, tx.WHEEL))
    out[:, 9] = np.where(shader.person[gid], shader.person_class[gid], is_car)   # flow class: 1 vehicle, 2 pedestrian, 4 cyclist
    out[:, 10] = (np.isin(mat, (tx.GROUND, tx.SIDEWALK)) & (face == 5)).astype(np.float32)
    out[:, 11] = tx.REFLECTIVITY[mat]
    return out


# ----------------------------------------------------------------------------------------------
# Writing


def _save_png_mask(path: Path, mask: np.ndarray):
    Image.fromarray((mask.astype(np.uint8) * 255)).save(path)


def _write_matrix(path: Path, m: np.ndarray):
    np.savetxt(path, m, fmt="%.10f")


def write_scene(scene: StreetScene, out: Path, timings: dict | None = None) -> None:
    """Render every sensor and write the processed layout into `out` (which must not exist)."""
    p = scene.params
    timings = {} if timings is None else timings
    out = Path(out)
    for sub in ("images", "ego_pose", "extrinsics", "intrinsics", "lidar", "sky_masks", "dynamic_masks/all",
                "dynamic_masks/human", "dynamic_masks/vehicle", "instances", "gt/depth", "gt/vehicles"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    caster = Caster(scene.groups)
    shader = Shader(scene, caster)
    T = p.num_frames
    imp = scene.imperfections
    t0 = time.perf_counter()
    for t in range(T):
        for cam in p.cameras:
            fr = render_camera(scene, caster, shader, t, cam)
            name = f"{t:03d}_{cam}"
            colour = fr.image
            if imp is not None and p.exposure_imperfect:
                colour = imp.apply_exposure(colour, t, cam)
            img = Image.fromarray(np.round(np.clip(colour, 0, 1) * 255).astype(np.uint8))
            if p.image_format == "jpg":
                img.save(out / "images" / f"{name}.jpg", quality=95)
            else:
                img.save(out / "images" / f"{name}.png")
            _save_png_mask(out / "sky_masks" / f"{name}.png", fr.sky)
            _save_png_mask(out / "dynamic_masks" / "all" / f"{name}.png", fr.dynamic)
            _save_png_mask(out / "dynamic_masks" / "vehicle" / f"{name}.png", fr.dynamic & ~fr.human)
            _save_png_mask(out / "dynamic_masks" / "human" / f"{name}.png", fr.human)
            np.save(out / "gt" / "depth" / f"{name}.npy", fr.depth)
    timings["cameras"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in range(T):
        render_lidar(scene, caster, shader, t).tofile(out / "lidar" / f"{t:03d}.bin")
    timings["lidar"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    L = scene.log_from_street
    for t in range(T):   # a noisy pose where there is pose noise; images, depth and LiDAR are the true pose's
        ego = L @ scene.ego_street[t]
        _write_matrix(out / "ego_pose" / f"{t:03d}.txt", ego if imp is None else ego @ imp.pose_delta[t])
    for cam in p.cameras:
        _write_matrix(out / "extrinsics" / f"{cam}.txt", scene.extrinsics[cam])
        K = scene.K[cam]
        np.savetxt(out / "intrinsics" / f"{cam}.txt", np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2], 0, 0, 0, 0, 0.0]),
                   fmt="%.10f")
    # As drivestudio's preprocessors: instances keyed 0..N-1 in order (the "simplified ids"), "id" the
    # source's own id, and every frame listing the integer keys of the instances annotated there.
    info, frame_instances = {}, {t: [] for t in range(T)}
    for key, v in enumerate(scene.moving_vehicles()):
        info[key] = {
            "id": v.id,
            "class_name": "Vehicle",
            "frame_annotations": {
                "frame_idx": list(range(T)),
                "obj_to_world": [(L @ v.poses[t]).tolist() for t in range(T)],
                "box_size": [v.size.tolist() for _ in range(T)],
            },
        }
        for t in range(T):
            frame_instances[t].append(key)
    first_person = len(info)
    for key, fig in enumerate(scene.people, start=first_person):
        boxes = fig.box_poses()
        info[key] = {"id": fig.id, "class_name": fig.class_name, "frame_annotations": {
            "frame_idx": list(range(T)), "obj_to_world": [(L @ boxes[t]).tolist() for t in range(T)],
            "box_size": [fig.box_size.tolist() for _ in range(T)]}}
        for t in range(T):
            frame_instances[t].append(key)
    (out / "instances" / "instances_info.json").write_text(json.dumps(info, indent=4))
    (out / "instances" / "frame_instances.json").write_text(json.dumps(frame_instances, indent=4))
    # Ground truth: static mesh in the first ego frame, vehicles in their object frames.
    E = scene.first_ego_from_street
    mb = MeshBuilder()
    for lo, hi, pose, skip in scene.static_parts:
        mb.add_box(lo, hi, E if pose is None else E @ pose, skip)
    mb.write_ply(out / "gt" / "static_mesh.ply")
    for v in scene.moving_vehicles():
        vb = MeshBuilder()
        for lo, hi in zip(v.group.lo, v.group.hi):
            vb.add_box(lo, hi)
        vb.write_ply(out / "gt" / "vehicles" / f"{v.id}.ply")
    meta = {
        "generator": "scenes.synthetic", "version": GENERATOR_VERSION, "digest": p.digest(),
        "params": p.identity(),
        "cameras": {str(c): CAMERA_NAMES[c] for c in p.cameras},
        "static_mesh": "gt/static_mesh.ply, metres, in the ego frame of ego_pose/000.txt (Waymo axes: x forward, y left, z up)",
        "vehicle_meshes": "gt/vehicles/<instance id>.ply, in the object frame of instances_info obj_to_world",
        "depth": "gt/depth/<frame>_<cam>.npy float32 camera z-depth (m) at pixel centres (+0.5), inf for sky",
        "lidar": "float32 N x 14 in the ego frame; flow = velocity (m/s) of the hit surface in ego axes; flow class 1 = vehicle",
        "parked_cars": "static background, included in the static mesh, not instances",
    }
    if scene.people:
        meta["lidar"] += ", 2 = pedestrian, 4 = cyclist (Waymo's label types)"
        meta["people"] = (f"{PEOPLE_FILE}: pedestrians and cyclists (instances 'Pedestrian' / 'Cyclist'), their "
                          "pieces' boxes and poses and joint angles per frame; dynamic_masks/human/ is their exact "
                          "per-pixel mask (bikes included), dynamic_masks/all/ vehicles and people")
        (out / PEOPLE_FILE).write_text(json.dumps(people_truth(scene.people, L, first_person)))
    if imp is not None:
        meta["imperfections"] = (f"{IMPERFECTIONS_FILE}: the true ego poses (ego_pose/ holds noisy ones), the pose "
                                 "noise and drift, the per-camera and per-image gains, white balance and vignetting "
                                 "applied to images/ (scenes/imperfections.py reads it)")
        write_imperfections(out / IMPERFECTIONS_FILE, scene)
    if any(f.class_name == "Pedestrian" for f in scene.people):
        meta["smpl"] = (f"{WALKER_MODEL_FILE}: the walker body model in SMPL's layout (scenes/smpl_synthetic.py), "
                        "humanpose/smpl.pkl: the pedestrians' poses as its SMPL parameters (drivestudio's layout); "
                        f"train SMPL nodes with model.smpl.body_model=<this folder>/{WALKER_MODEL_FILE}")
    (out / "gt" / "meta.json").write_text(json.dumps(meta, indent=1, default=list))
    if "smpl" in meta:
        write_people_smpl(out)
    timings["write"] = time.perf_counter() - t0


WALKER_MODEL_FILE = "gt/smpl_walker.npz"


def write_people_smpl(out: Path) -> None:
    """A street with pedestrians: humanpose/smpl.pkl (their poses as the walker model's SMPL parameters)
    and the walker body model itself (gt/smpl_walker.npz), so SMPL nodes train on it without the
    licensed model. A street without pedestrians (the default) gets neither: its bytes are unchanged."""
    from .smpl_synthetic import write_people_humanpose, write_walker_model
    write_walker_model(Path(out) / WALKER_MODEL_FILE)
    write_people_humanpose(out)


def generate(params: SyntheticParams, out: Path, timings: dict | None = None) -> StreetScene:
    """Build and write a scene into `out`, then write the completion marker last."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    scene = build_street(params)
    write_scene(scene, out, timings)
    (Path(out) / COMPLETE_MARKER).write_text(json.dumps({"digest": params.digest(), "version": GENERATOR_VERSION}))
    timings["total"] = time.perf_counter() - t0
    return scene
