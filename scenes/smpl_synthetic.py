"""A small body model in SMPL's file layout for the synthetic street's pedestrians, and their poses as
SMPL-style parameters.

The model's kinematic tree is scenes/people.py's walker: the pelvis is the root; the chest (spine),
neck and head hang off it (their angles stay zero: the walker's body is one rigid piece); the thighs
hinge at the hips, the shins (with the feet) at the knees, the arms at the shoulders. Its template is
the walker's boxes (people.py's own part functions) at the rest pose (every joint angle zero) for a
walker of height `TEMPLATE_HEIGHT`, each box's 8 corners a vertex set and its faces 12 triangles;
each vertex is skinned rigidly (weight 1.0) to its piece's joint; J_regressor places each joint at
trilinear weights of its own box's corners (the hip at its thigh's top face, ...), so J = J_regressor ·
v reproduces the joints exactly for any shape. Every length of a walker is a multiple of its height,
so one shape blend shape, the template itself times HEIGHT_STEP / TEMPLATE_HEIGHT, gives every height:
betas[0] = (height - TEMPLATE_HEIGHT) / HEIGHT_STEP (the other betas have zero blend shapes, as SMPL
counts 10). The pose blend shapes are zero.

`pedestrian_smpl(figure)` turns a walker's root pose and joint angles (people.json's figure, or a
people.Figure) into per-frame parameters: rotations per joint (the root's the walker's heading in the
world, the hinges rot_y of their angles, as axis-angles (0, angle, 0)), SMPL's transl and betas, so that
LBS of this model reproduces every piece at every frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple, Union

import numpy as np

from models.gaussians.smpl_body import BodyModelArrays
from .people import _arm_parts, _body_parts, _leg_parts

TEMPLATE_HEIGHT = 1.7
HEIGHT_STEP = 0.1
NUM_BETAS = 10

JOINTS = ("pelvis", "hip_left", "hip_right", "spine", "knee_left", "knee_right", "neck",
          "shoulder_left", "shoulder_right", "head")
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 3, 3, 6)
# people.py's pieces and parts -> the joint that moves them
PIECE_JOINT = {"thigh_left": "hip_left", "thigh_right": "hip_right", "shin_left": "knee_left",
               "shin_right": "knee_right", "arm_left": "shoulder_left", "arm_right": "shoulder_right"}
BODY_PART_JOINT = {"pelvis": "pelvis", "chest": "spine", "neck": "neck", "head": "head"}
# which part's box holds (and regresses) each joint
JOINT_BOX = {"pelvis": ("body", "pelvis"), "spine": ("body", "chest"), "neck": ("body", "neck"),
             "head": ("body", "head"), "hip_left": ("thigh_left", "thigh"), "hip_right": ("thigh_right", "thigh"),
             "knee_left": ("shin_left", "shin"), "knee_right": ("shin_right", "shin"),
             "shoulder_left": ("arm_left", "sleeve"), "shoulder_right": ("arm_right", "sleeve")}
HINGE_JOINTS = ("hip_left", "hip_right", "knee_left", "knee_right", "shoulder_left", "shoulder_right")


def joint_positions(h: float) -> Dict[str, np.ndarray]:
    """Rest joints of a walker of height ``h`` in its root frame (people.pedestrian's numbers)."""
    thigh = 0.23 * h
    hip_h = (0.23 + 0.24 + 0.035) * h
    out = {"pelvis": (0.0, 0.0, hip_h), "spine": (0.0, 0.0, hip_h + 0.06 * h), "neck": (0.0, 0.0, hip_h + 0.30 * h),
           "head": (0.0, 0.0, hip_h + 0.365 * h)}
    for s, sy in (("left", 1.0), ("right", -1.0)):
        out[f"hip_{s}"] = (0.0, sy * 0.055 * h, hip_h)
        out[f"knee_{s}"] = (0.0, sy * 0.055 * h, hip_h - thigh)
        out[f"shoulder_{s}"] = (0.0, sy * 0.13 * h, hip_h + 0.28 * h)
    return {k: np.array(v, float) for k, v in out.items()}


def walker_pieces(h: float) -> Dict[str, list]:
    """people.py's walker parts (name, lo, hi in the piece's frame) per piece, for height ``h``."""
    grey = np.full(3, 0.5)
    thigh, shin = 0.23 * h, 0.24 * h
    hip_h = thigh + shin + 0.035 * h
    thigh_parts, shin_parts = _leg_parts(h, thigh, shin, grey, grey, grey)
    arm = _arm_parts(h, 0.36 * h, grey, grey)
    pieces = {"body": _body_parts(h, grey, grey, grey, hip_h)}
    for s in ("left", "right"):
        pieces[f"thigh_{s}"], pieces[f"shin_{s}"], pieces[f"arm_{s}"] = thigh_parts, shin_parts, arm
    return {k: [(p[0], np.asarray(p[1], float), np.asarray(p[2], float)) for p in v] for k, v in pieces.items()}


def _corners(lo, hi) -> np.ndarray:
    """[8, 3], corner b = (hi where bit 0/1/2 of b is set else lo) for x/y/z."""
    return np.array([[hi[a] if b >> a & 1 else lo[a] for a in range(3)] for b in range(8)])


def _box_triangles(base: int, corners: np.ndarray) -> List[Tuple[int, int, int]]:
    centre = corners.mean(0)
    tris = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for side in (0, 1):
            quad = [sum(bit << ax for bit, ax in ((side, axis), (i, u), (j, v))) for i, j in ((0, 0), (1, 0), (1, 1), (0, 1))]
            for tri in ((quad[0], quad[1], quad[2]), (quad[0], quad[2], quad[3])):
                p = corners[list(tri)]
                n = np.cross(p[1] - p[0], p[2] - p[0])
                if n @ (p.mean(0) - centre) < 0:     # outward normals
                    tri = (tri[0], tri[2], tri[1])
                tris.append(tuple(base + t for t in tri))
    return tris


@dataclass
class SyntheticBody:
    arrays: BodyModelArrays
    layout: List[Tuple[str, str, slice]]     # (piece, part, its 8 vertices) in vertex order


def synthetic_body_model() -> SyntheticBody:
    """The walker body model (see the module docstring) and where each box's corners are."""
    h = TEMPLATE_HEIGHT
    joints = joint_positions(h)
    J = len(JOINTS)
    verts, faces, weights, layout = [], [], [], []
    J_reg = None
    box_of: Dict[str, Tuple[int, np.ndarray, np.ndarray]] = {}
    for piece, parts in walker_pieces(h).items():
        for name, lo, hi in parts:
            joint = BODY_PART_JOINT[name] if piece == "body" else PIECE_JOINT[piece]
            origin = np.zeros(3) if piece == "body" else joints[joint]   # a limb's frame sits at its joint
            c = _corners(lo + origin, hi + origin)
            base = len(verts) * 8
            faces += _box_triangles(base, c)
            w = np.zeros((8, J))
            w[:, JOINTS.index(joint)] = 1.0
            verts.append(c)
            weights.append(w)
            layout.append((piece, name, slice(base, base + 8)))
            box_of[f"{piece}/{name}"] = (base, lo + origin, hi + origin)
    v = np.concatenate(verts)
    J_reg = np.zeros((J, len(v)))
    for j, joint in enumerate(JOINTS):
        base, lo, hi = box_of["/".join(JOINT_BOX[joint])]
        f = (joints[joint] - lo) / (hi - lo)                # trilinear coordinates of the joint in its box
        for b in range(8):
            J_reg[j, base + b] = np.prod([f[a] if b >> a & 1 else 1 - f[a] for a in range(3)])
    shapedirs = np.zeros((len(v), 3, NUM_BETAS))
    shapedirs[:, :, 0] = v * (HEIGHT_STEP / TEMPLATE_HEIGHT)
    arrays = BodyModelArrays(v_template=v, shapedirs=shapedirs, posedirs=np.zeros((len(v), 3, (J - 1) * 9)),
                             J_regressor=J_reg, weights=np.concatenate(weights), parents=np.array(PARENTS),
                             faces=np.array(faces, dtype=np.int64), source="synthetic walker")
    return SyntheticBody(arrays, layout)


def betas_for_height(h: float) -> np.ndarray:
    b = np.zeros(NUM_BETAS)
    b[0] = (h - TEMPLATE_HEIGHT) / HEIGHT_STEP
    return b


@dataclass
class PedestrianSMPL:
    """A walker's per-frame SMPL-style parameters (world frame, metres)."""

    betas: np.ndarray          # [B]
    axis_angle: np.ndarray     # [T, J, 3]: joint 0 the global orientation (world), then body pose
    rotmats: np.ndarray        # [T, J, 3, 3] the same as rotation matrices
    transl: np.ndarray         # [T, 3] SMPL's transl (added after posing)
    pelvis: np.ndarray         # [T, 3] the root joint's world position
    valid: np.ndarray          # [T] bool


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _axis_angle(R: np.ndarray) -> np.ndarray:
    """Axis-angle vectors of rotation matrices [..., 3, 3] (scipy's, robust at a half turn)."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(*R.shape[:-2], 3)


def pedestrian_smpl(figure: Union[dict, "object"]) -> PedestrianSMPL:
    """SMPL-style parameters of a walker: ``figure`` is people.json's figure record (root_to_world,
    joints_rad, height_m) or a people.Figure (root, joints, height)."""
    if isinstance(figure, dict):
        root, joints, h = np.asarray(figure["root_to_world"], float), figure["joints_rad"], float(figure["height_m"])
        cls = figure.get("class_name", "Pedestrian")
    else:
        root, joints, h, cls = np.asarray(figure.root, float), figure.joints, float(figure.height), figure.class_name
    if cls != "Pedestrian":
        raise ValueError(f"pedestrian_smpl: the walker model fits pedestrians, not a {cls}")
    T = len(root)
    R = np.tile(np.eye(3), (T, len(JOINTS), 1, 1))
    R[:, 0] = root[:, :3, :3]
    aa = np.zeros((T, len(JOINTS), 3))
    aa[:, 0] = _axis_angle(root[:, :3, :3])
    for name in HINGE_JOINTS:
        angle = np.asarray(joints[name], float)
        R[:, JOINTS.index(name)] = _rot_y(angle)
        aa[:, JOINTS.index(name), 1] = angle
    j0 = joint_positions(h)["pelvis"]
    pelvis = root[:, :3, 3] + root[:, :3, :3] @ j0
    return PedestrianSMPL(betas=betas_for_height(h), axis_angle=aa, rotmats=R, transl=pelvis - j0,
                          pelvis=pelvis, valid=np.ones(T, bool))


def write_walker_model(path) -> "Path":
    """The walker body model as a file in SMPL's layout (.pkl or .npz)."""
    from models.gaussians.smpl_body import write_body_model
    return write_body_model(path, synthetic_body_model().arrays, sparse_regressor=str(path).endswith(".pkl"))


def write_people_humanpose(scene_dir, camera: int = 0) -> "Path":
    """humanpose/smpl.pkl of a generated street with pedestrians, in drivestudio's layout: each walker's
    orientation in camera ``camera``'s OpenCV frame (selected_cam_idx), its body pose and betas of the
    walker model, and (beyond drivestudio's keys) ``transl``: the root joint in the world of
    instances_info.json. Opt-in, after generation: the generator's own files stay as they are."""
    import json
    from pathlib import Path
    from scenes.geometry import OPENCV_TO_DATASET
    from scenes.people import PEOPLE_FILE
    from scenes.smpl_format import humanpose_record, write_humanpose
    scene_dir = Path(scene_dir)
    people = json.loads((scene_dir / PEOPLE_FILE).read_text())["figures"]
    walkers = [f for f in people if f["class_name"] == "Pedestrian"]
    if not walkers:
        raise ValueError(f"{scene_dir / PEOPLE_FILE}: no pedestrians to write SMPL parameters for")
    T = len(walkers[0]["root_to_world"])
    cam_to_ego = np.loadtxt(scene_dir / "extrinsics" / f"{camera}.txt").reshape(4, 4) @ OPENCV_TO_DATASET
    cam_R = np.stack([np.loadtxt(scene_dir / "ego_pose" / f"{t:03d}.txt").reshape(4, 4) @ cam_to_ego
                      for t in range(T)])[:, :3, :3]
    records = {}
    for f in walkers:
        p = pedestrian_smpl(f)
        orient = np.einsum("tji,tjk->tik", cam_R, p.rotmats[:, 0])        # camera <- world
        records[int(f["instance"])] = humanpose_record(orient, p.rotmats[:, 1:], np.tile(p.betas, (T, 1)), p.valid,
                                                       selected_cam=np.full(T, camera), transl=p.pelvis)
    return write_humanpose(scene_dir, records)
