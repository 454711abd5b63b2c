"""People on the synthetic street: walking pedestrians and cyclists, articulated box figures.

A figure is a few rigid pieces (raycast.Group), each with its own pose per frame: a pedestrian's
body (pelvis, chest, neck, head), two thighs, two shins (with the feet) and two arms, swinging about
the hips, knees and shoulders with a walking phase; a cyclist's rigid bike (frame and two wheels of
crossed thin boxes), the rider's leaning body, arms to the handlebar, and legs whose feet follow the
pedals (two-link inverse kinematics at the knee). Every figure has a root frame: on the ground under
the hips (pedestrian) or under the bottom bracket (cyclist), x its heading, z up; its instance box is
the union over all frames of its parts' bounds in that frame, so it encloses the figure at every frame.

Draws come from generators of their own, one per figure (seeded by the street's seed, the kind and the
figure's index), so adding people changes no other draw of the street and one more pedestrian leaves
the others as they were. Joint angles are rotations about the piece's lateral (y) axis, in radians,
positive swinging the limb backwards (towards -x); a piece's pose is
    root @ translate(joint) @ rot_y(angle)
with the limb hanging along its -z from the joint (a shin's joint is its thigh's end, its angle the
knee's, relative to the thigh).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import textures as tx
from .geometry import make_pose, rigid_inverse, rot_y, rot_z
from .raycast import Group, box_corners

# key -> what it counts; 0 (the default) = none, left out of the scene's digest
PEOPLE_KEYS = {
    "pedestrians": "walking people on the sidewalks (the third, ninth, ... crosses at the crosswalk)",
    "cyclists": "riders on bikes along the road's edge (even ones with the ego car, odd ones oncoming)",
}
PEOPLE_STREAM = 0x9E0971E   # seeds the people's generators apart from the street's and the imperfections'
PEOPLE_FILE = "gt/people.json"
# Waymo's Label.Type, which drivestudio's waymo_preprocess.py writes as the LiDAR's flow class
FLOW_CLASS = {"Vehicle": 1, "Pedestrian": 2, "Cyclist": 4}

SKIN_TONES = np.array([[0.93, 0.76, 0.64], [0.80, 0.60, 0.45], [0.62, 0.43, 0.30], [0.42, 0.28, 0.19],
                       [0.88, 0.70, 0.55]])
CLOTH_COLOURS = np.array([[0.12, 0.16, 0.35], [0.70, 0.12, 0.12], [0.15, 0.45, 0.20], [0.85, 0.80, 0.70],
                          [0.10, 0.10, 0.10], [0.90, 0.60, 0.10], [0.45, 0.30, 0.55], [0.25, 0.55, 0.70],
                          [0.55, 0.55, 0.55], [0.60, 0.40, 0.25]])
BIKE_COLOURS = np.array([[0.80, 0.10, 0.10], [0.10, 0.30, 0.70], [0.90, 0.90, 0.90], [0.15, 0.15, 0.15],
                         [0.95, 0.75, 0.10], [0.20, 0.60, 0.30]])
TYRE = np.array([0.05, 0.05, 0.05])


@dataclass
class Piece:
    """A rigid piece of a figure: named boxes in its own frame and its pose per frame (-> street)."""

    name: str
    parts: list                   # (part name, lo [3], hi [3], material, albedo [3])
    poses: np.ndarray             # [T, 4, 4]


@dataclass
class Figure:
    id: str                       # the instance's source id ("ped_0", "cyc_1")
    class_name: str               # Waymo's: "Pedestrian" or "Cyclist"
    height: float                 # metres, standing
    speed: float                  # metres per second along its path
    colours: dict                 # name -> RGB albedo
    root: np.ndarray              # [T, 4, 4] root -> street
    pieces: list                  # Piece
    joints: dict                  # joint name -> [T] radians (see the module docstring)
    box_centre: np.ndarray = field(default=None)   # [3] in the root frame
    box_size: np.ndarray = field(default=None)     # [3] l, w, h
    groups: list = field(default_factory=list)     # raycast.Group per piece, made by make_groups

    def box_poses(self) -> np.ndarray:
        """[T, 4, 4] instance box (centre, x heading, z up) -> street."""
        return self.root @ make_pose(np.eye(3), self.box_centre)

    def make_groups(self, instance: int) -> list:
        self.groups = [Group(name=f"{self.id}_{pc.name}", lo=np.array([p[1] for p in pc.parts], float),
                             hi=np.array([p[2] for p in pc.parts], float),
                             material=np.array([p[3] for p in pc.parts]),
                             albedo=np.array([p[4] for p in pc.parts], float), param=np.zeros(len(pc.parts)),
                             poses=pc.poses, instance=instance) for pc in self.pieces]
        return self.groups


def check_people_keys(params) -> list:
    """The problems with the people keys of `params` (SyntheticParams), as messages; sets them to ints."""
    bad = []
    for key, meaning in PEOPLE_KEYS.items():
        value = getattr(params, key)
        whole = isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer())
        if isinstance(value, bool) or not whole or value < 0:
            bad.append(f"scene.{key}: expected a whole number >= 0 ({meaning}), got {value!r}")
        else:
            setattr(params, key, int(value))
    return bad


def _rng(seed: int, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng([PEOPLE_STREAM, kind, int(seed), index])


def _walk(start: float, lo: float, hi: float, distance: np.ndarray, heading: float):
    """Position and direction (+1/-1) after `distance` metres from `start` (inside [lo, hi]) set off
    towards `heading` (+1/-1), turning at the ends."""
    span = hi - lo
    w = np.mod(start - lo + heading * distance, 2 * span)
    forward = w < span
    return lo + np.where(forward, w, 2 * span - w), heading * np.where(forward, 1.0, -1.0)


def _translate(x, y, z) -> np.ndarray:
    return make_pose(np.eye(3), (x, y, z))


def _hinge(parent: np.ndarray, joint, angle) -> np.ndarray:
    """[T, 4, 4] poses of a piece hinged at `joint` (parent frame) by `angle` [T] about y."""
    return np.stack([parent[t] @ make_pose(rot_y(a), joint) for t, a in enumerate(angle)])


def _body_parts(h: float, skin, shirt, trousers, z0: float) -> list:
    """Pelvis, chest, neck and head, from the hips (z = z0) up, in the body's frame."""
    return [("pelvis", (-0.06 * h, -0.1 * h, z0 - 0.04 * h), (0.06 * h, 0.1 * h, z0 + 0.06 * h), tx.CLOTH, trousers),
            ("chest", (-0.065 * h, -0.1 * h, z0 + 0.06 * h), (0.065 * h, 0.1 * h, z0 + 0.30 * h), tx.CLOTH, shirt),
            ("neck", (-0.025 * h, -0.025 * h, z0 + 0.30 * h), (0.025 * h, 0.025 * h, z0 + 0.365 * h), tx.SKIN, skin),
            ("head", (-0.055 * h, -0.05 * h, z0 + 0.365 * h), (0.06 * h, 0.05 * h, z0 + 0.495 * h), tx.SKIN, skin)]


def _leg_parts(h: float, thigh: float, shin: float, skin, trousers, shoe):
    return ([("thigh", (-0.045 * h, -0.04 * h, -thigh), (0.045 * h, 0.04 * h, 0.0), tx.CLOTH, trousers)],
            [("shin", (-0.035 * h, -0.032 * h, -shin), (0.035 * h, 0.032 * h, 0.0), tx.CLOTH, trousers),
             ("foot", (-0.04 * h, -0.034 * h, -shin - 0.035 * h), (0.09 * h, 0.034 * h, -shin), tx.CLOTH, shoe)])


def _arm_parts(h: float, length: float, skin, shirt):
    return [("sleeve", (-0.03 * h, -0.03 * h, -0.45 * length), (0.03 * h, 0.03 * h, 0.0), tx.CLOTH, shirt),
            ("forearm", (-0.025 * h, -0.025 * h, -0.87 * length), (0.025 * h, 0.025 * h, -0.45 * length), tx.SKIN, skin),
            ("hand", (-0.028 * h, -0.022 * h, -length), (0.028 * h, 0.022 * h, -0.87 * length), tx.SKIN, skin)]


def _clothes(rng):
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    shirt, trousers, shoe = CLOTH_COLOURS[rng.choice(len(CLOTH_COLOURS), 3, replace=False)]
    return dict(skin=skin, shirt=shirt, trousers=trousers, shoes=shoe * 0.5)


def pedestrian(seed: int, index: int, T: int, frame_rate: float, street: dict) -> Figure:
    """A walker on a sidewalk, or (index % 6 == 2) across the road at the crosswalk, turning at the ends."""
    rng = _rng(seed, 0, index)
    h = rng.uniform(1.5, 1.95)
    speed = rng.uniform(1.0, 1.6)
    c = _clothes(rng)
    phase0 = rng.uniform(0, 2 * np.pi)
    thigh, shin, foot = 0.23 * h, 0.24 * h, 0.035 * h
    hip_h = thigh + shin + foot
    dist = speed * np.arange(T) / frame_rate
    side = 1.0 if index % 2 == 0 else -1.0
    if index % 6 == 2:    # crossing: along y between the two sidewalks' middles
        edge = (street["road_half"] + street["sidewalk_out"]) / 2
        x = np.full(T, street["crosswalk_x"] + rng.uniform(-1.2, 1.2))
        y, direction = _walk(side * 0.98 * edge, -edge, edge, dist, -side)
        yaw = np.where(direction > 0, np.pi / 2, -np.pi / 2)
    else:
        y = np.full(T, side * (rng.uniform(6.9, 7.2) if rng.uniform() < 0.5 else rng.uniform(8.1, 8.5)))
        heading = 1.0 if rng.uniform() < 0.5 else -1.0
        x, direction = _walk(rng.uniform(14, 44), -25.0, street["street_end"] - 5, dist, heading)
        yaw = np.where(direction > 0, 0.0, np.pi)
    base = np.where(np.abs(y) > street["road_half"], street["curb"], 0.0)
    # A stride (two steps) of 0.8 x the height; hips swing +-0.4 rad, the knee bends while its leg swings forward.
    phase = phase0 + 2 * np.pi * dist / (0.8 * h)
    joints = {"hip_left": -0.4 * np.sin(phase), "hip_right": 0.4 * np.sin(phase),
              "knee_left": 0.1 + 0.6 * np.maximum(np.cos(phase), 0), "knee_right": 0.1 + 0.6 * np.maximum(-np.cos(phase), 0),
              "shoulder_left": 0.35 * np.sin(phase), "shoulder_right": -0.35 * np.sin(phase)}
    # The body drops so that the lower foot stands on the ground.
    reach = [thigh * np.cos(joints[f"hip_{s}"]) + (shin + foot) * np.cos(joints[f"hip_{s}"] + joints[f"knee_{s}"])
             for s in ("left", "right")]
    lift = np.maximum(*reach) - hip_h
    root = np.stack([make_pose(rot_z(yaw[t]), (x[t], y[t], base[t] + lift[t])) for t in range(T)])
    thigh_parts, shin_parts = _leg_parts(h, thigh, shin, c["skin"], c["trousers"], c["shoes"])
    pieces = [Piece("body", _body_parts(h, c["skin"], c["shirt"], c["trousers"], hip_h), root)]
    for s, sy in (("left", 1.0), ("right", -1.0)):
        thigh_pose = _hinge(root, (0.0, sy * 0.055 * h, hip_h), joints[f"hip_{s}"])
        pieces += [Piece(f"thigh_{s}", thigh_parts, thigh_pose),
                   Piece(f"shin_{s}", shin_parts, _hinge(thigh_pose, (0.0, 0.0, -thigh), joints[f"knee_{s}"])),
                   Piece(f"arm_{s}", _arm_parts(h, 0.36 * h, c["skin"], c["shirt"]),
                         _hinge(root, (0.0, sy * 0.13 * h, hip_h + 0.28 * h), joints[f"shoulder_{s}"]))]
    return _boxed(Figure(f"ped_{index}", "Pedestrian", float(h), float(speed), c, root, pieces, joints))


def _knee(hip, foot, l1, l2):
    """Knee positions [T, 2] (x, z) of legs from `hip` [2] to `foot` [T, 2], bent forwards (+x)."""
    d = foot - hip
    r = np.linalg.norm(d, axis=1)
    cos_a = np.clip((l1 ** 2 + r ** 2 - l2 ** 2) / (2 * l1 * r), -1, 1)
    a = np.arccos(cos_a)
    u = d / r[:, None]
    # turn u by +a in the x-z plane towards +x (u points down: a rotation that moves -z to +x)
    rx = u[:, 0] * np.cos(a) - u[:, 1] * np.sin(a)
    rz = u[:, 0] * np.sin(a) + u[:, 1] * np.cos(a)
    cand = np.stack([rx, rz], 1)
    other = np.stack([u[:, 0] * np.cos(a) + u[:, 1] * np.sin(a), -u[:, 0] * np.sin(a) + u[:, 1] * np.cos(a)], 1)
    cand = np.where((cand[:, :1] >= other[:, :1]), cand, other)
    return hip + l1 * cand


def _down_angle(d):
    """The rot_y angle that turns -z onto the x-z direction(s) d."""
    d = np.atleast_2d(d)
    return np.arctan2(-d[:, 0], -d[:, 1])


def cyclist(seed: int, index: int, T: int, frame_rate: float, street: dict) -> Figure:
    """A rider at the road's edge: even ones in the ego car's direction, odd ones oncoming."""
    rng = _rng(seed, 1, index)
    h = rng.uniform(1.6, 1.9)
    speed = rng.uniform(3.0, 6.0)
    c = _clothes(rng)
    c["bike"] = BIKE_COLOURS[rng.integers(len(BIKE_COLOURS))]
    lean = rng.uniform(0.45, 0.65)
    crank0 = rng.uniform(0, 2 * np.pi)
    dist = speed * np.arange(T) / frame_rate
    edge = street["lane_half"] - 0.45
    if index % 2 == 0:
        x, direction = _walk(14.0 + 9.0 * (index // 2) + rng.uniform(0, 4), -25.0, street["street_end"] - 10, dist, 1.0)
        y = -edge
    else:
        x, direction = _walk(40.0 + 10.0 * (index // 2) + rng.uniform(0, 5), -25.0, street["street_end"] - 10, dist, -1.0)
        y = edge
    yaw = np.where(direction > 0, 0.0, np.pi)
    root = np.stack([make_pose(rot_z(yaw[t]), (x[t], y, 0.0)) for t in range(T)])
    # Legs: the feet on the pedals (crank 0.17 m at 0.34 m), one crank turn per 5.3 m (a gear of ~2.5).
    l1, l2 = 0.245 * h, 0.27 * h
    crank_z, crank_r = 0.34, 0.17
    hip = np.array([-0.2, (crank_z - crank_r) + np.sqrt((0.93 * (l1 + l2)) ** 2 - 0.2 ** 2)])
    crank = crank0 + 2 * np.pi * dist / 5.3
    bike = c["bike"]
    wheel_parts = []
    for wx, name in ((-0.52, "rear"), (0.52, "front")):
        wheel_parts += [(f"{name}_wheel", (wx - 0.33, -0.02, 0.12), (wx + 0.33, 0.02, 0.56), tx.BIKE, TYRE),
                        (f"{name}_wheel_cross", (wx - 0.22, -0.021, 0.01), (wx + 0.22, 0.021, 0.67), tx.BIKE, TYRE)]
    frame = [("down_tube", (-0.52, -0.02, 0.31), (0.45, 0.02, 0.37), tx.BIKE, bike),
             ("top_tube", (-0.22, -0.02, 0.78), (0.45, 0.02, 0.82), tx.BIKE, bike),
             ("seat_tube", (-0.24, -0.02, 0.34), (-0.19, 0.02, hip[1] - 0.06), tx.BIKE, bike),
             ("head_tube", (0.42, -0.025, 0.34), (0.47, 0.025, 1.0), tx.BIKE, bike),
             ("handlebar", (0.40, -0.28, 0.98), (0.47, 0.28, 1.02), tx.BIKE, TYRE),
             ("saddle", (-0.30, -0.07, hip[1] - 0.06), (-0.10, 0.07, hip[1] - 0.02), tx.BIKE, TYRE)]
    body_pose = _hinge(root, (hip[0], 0.0, hip[1]), np.full(T, lean))   # the torso leans forwards
    pieces = [Piece("bike", wheel_parts + frame, root),
              Piece("body", _body_parts(h, c["skin"], c["shirt"], c["trousers"], 0.0), body_pose)]
    shoulder = hip + 0.28 * h * np.array([np.sin(lean), np.cos(lean)])
    grip = np.array([0.43, 1.0])
    arm = grip - shoulder
    arm_angle = _down_angle(arm)[0]
    joints = {"crank": np.mod(crank, 2 * np.pi), "lean": np.full(T, lean), "shoulder": np.full(T, arm_angle)}
    for s, sy, offset in (("left", 1.0, 0.0), ("right", -1.0, np.pi)):
        foot = np.stack([crank_r * np.cos(crank + offset), crank_z + crank_r * np.sin(crank + offset)], 1)
        knee = _knee(hip, foot, l1, l2)
        hip_angle = _down_angle(knee - hip)
        knee_angle = np.angle(np.exp(1j * (_down_angle(foot - knee) - hip_angle)))
        joints[f"hip_{s}"], joints[f"knee_{s}"] = hip_angle, knee_angle
        thigh_parts, shin_parts = _leg_parts(h, l1, l2 - 0.035 * h, c["skin"], c["trousers"], c["shoes"])
        thigh_pose = _hinge(root, (hip[0], sy * 0.055 * h, hip[1]), hip_angle)
        pieces += [Piece(f"thigh_{s}", thigh_parts, thigh_pose),
                   Piece(f"shin_{s}", shin_parts, _hinge(thigh_pose, (0.0, 0.0, -l1), knee_angle)),
                   Piece(f"arm_{s}", _arm_parts(h, float(np.linalg.norm(arm)), c["skin"], c["shirt"]),
                         _hinge(root, (shoulder[0], sy * 0.13 * h, shoulder[1]), np.full(T, arm_angle)))]
    return _boxed(Figure(f"cyc_{index}", "Cyclist", float(h), float(speed), c, root, pieces, joints))


def _boxed(fig: Figure, pad: float = 0.02) -> Figure:
    """Set the figure's box: its parts' bounds in the root frame over all frames, padded."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    inv = np.stack([rigid_inverse(r) for r in fig.root])
    for pc in fig.pieces:
        corners = box_corners(np.array([p[1] for p in pc.parts], float), np.array([p[2] for p in pc.parts], float))
        local = np.einsum("tij,tjk->tik", inv, pc.poses)          # piece -> root per frame
        pts = corners.reshape(-1, 3) @ local[:, :3, :3].transpose(0, 2, 1) + local[:, None, :3, 3]
        lo = np.minimum(lo, pts.reshape(-1, 3).min(0)); hi = np.maximum(hi, pts.reshape(-1, 3).max(0))
    fig.box_centre = (lo + hi) / 2
    fig.box_size = hi - lo + 2 * pad
    return fig


def build_people(params, street: dict, first_instance: int) -> list:
    """The figures of `params` (pedestrians, then cyclists), their groups made with instance numbers
    from `first_instance` on."""
    T, fr = params.num_frames, params.frame_rate
    figures = [pedestrian(params.seed, i, T, fr, street) for i in range(params.pedestrians)]
    figures += [cyclist(params.seed, i, T, fr, street) for i in range(params.cyclists)]
    for k, fig in enumerate(figures):
        fig.make_groups(first_instance + k)
    return figures


def point_velocity(poses: np.ndarray, t: int, local: np.ndarray, frame_rate: float) -> np.ndarray:
    """[N, 3] street velocity (m/s) at frame t of points given in a piece's frame (forward difference,
    backward at the last frame)."""
    T = len(poses)
    a, b = (t, t + 1) if t + 1 < T else (max(t - 1, 0), t)
    d = poses[b] - poses[a]
    return (local @ d[:3, :3].T + d[:3, 3]) * frame_rate


def people_truth(figures: list, log_from_street: np.ndarray, first_key: int) -> dict:
    """gt/people.json: each figure's instance key, shape, colours, root and piece poses per frame (log
    world, as instances_info.json) and joint angles."""
    def mats(poses):
        return [(log_from_street @ p).tolist() for p in poses]
    return {
        "description": "People of the synthetic street (scenes/people.py): per figure its instance key in "
                       "instances/instances_info.json, standing height (m), speed (m/s), colours (RGB albedo), "
                       "root_to_world per frame (root: on the ground under the hips or the bottom bracket, x "
                       "heading, z up), each rigid piece's boxes (lo, hi in the piece's frame) and piece_to_world "
                       "per frame, and joint angles per frame (radians about the piece's y axis, positive "
                       "swinging the limb backwards; knees relative to the thigh; piece = root @ "
                       "translate(joint) @ rot_y(angle), hanging along -z). World = the log world of ego_pose/.",
        "figures": [{
            "instance": first_key + k, "id": f.id, "class_name": f.class_name, "height_m": f.height,
            "speed_mps": f.speed, "colours": {n: np.asarray(v).tolist() for n, v in f.colours.items()},
            "box_centre_in_root": f.box_centre.tolist(), "box_size": f.box_size.tolist(),
            "root_to_world": mats(f.root),
            "pieces": {pc.name: {"boxes": {p[0]: [list(p[1]), list(p[2])] for p in pc.parts},
                                 "piece_to_world": mats(pc.poses)} for pc in f.pieces},
            "joints_rad": {n: np.asarray(v).tolist() for n, v in f.joints.items()},
        } for k, f in enumerate(figures)],
    }
