"""A scene's SMPL parameters in drivestudio's layout: ``humanpose/smpl.pkl``.

drivestudio's human-pose preprocessing (4D-Humans tracks matched to the boxes) writes, with
joblib, one dict per pedestrian keyed by its instance id (the key of instances/instances_info.json),
over all the sequence's frames T (frame index = the file's frame number):

    {"smpl": {"global_orient": [T, 1, 3, 3],   # rotation matrices, in the OpenCV frame of the
                                               #   camera that saw the person best at that frame
              "body_pose":     [T, 23, 3, 3],  # SMPL's local joint rotations
              "betas":         [T, 10]},
     "selected_cam_idx": [T] long,             # that camera (-1 where none)
     "valid_mask":       [T] bool,             # frames with parameters (observed or interpolated)
     "matched_mask", "must_appear_mask": [T] bool}

as torch tensors. The world orientation of the body is camera_to_world[:3, :3] · global_orient; the
file holds no translation: drivestudio puts the body at its box's centre. Files written here may add
"transl" [T, 3] (the root joint's world position) and "orient_frame": "world" (global_orient already
in the world), which drivestudio's reader ignores.

The file is unpickled with the body model's restricted unpickler (numpy arrays, torch tensors through
torch's weights-only loader, plain values): it cannot run code. Axis-angle arrays ([T, 3] / [T, 1, 3],
[T, J-1, 3]) are accepted too and turned into rotation matrices.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np
import torch

from models.gaussians.smpl_body import BodyModelError, rodrigues, safe_pickle_load

SMPL_FILE = "humanpose/smpl.pkl"


class SMPLFileError(ValueError):
    """A humanpose/smpl.pkl that cannot be read: the message names the file, instance and key."""


@dataclass
class HumanTrack:
    """One pedestrian's parameters over the sequence's frames (numpy, float64)."""

    instance: int
    global_orient: np.ndarray              # [T, 3, 3] in the frame `orient_frame` says
    body_pose: np.ndarray                  # [T, J-1, 3, 3]
    betas: np.ndarray                      # [T, B]
    valid: np.ndarray                      # [T] bool
    selected_cam: Optional[np.ndarray]     # [T] int (-1 none), where the orientation is per camera
    transl: Optional[np.ndarray] = None    # [T, 3] root joint in the world, where the file has it
    orient_frame: str = "camera"           # "camera" (drivestudio's) or "world"

    @property
    def num_frames(self) -> int:
        return int(self.valid.shape[0])

    def world_orient(self, cam_to_world: Optional[Mapping[int, np.ndarray]] = None, start: int = 0,
                     end: Optional[int] = None) -> np.ndarray:
        """[end - start, 3, 3] the body's orientation in the world over frames [start, end):
        camera_to_world[cam][t - start] (OpenCV camera -> world, [end - start, 4, 4] per camera id, as
        drivestudio's loader holds them for its frame range) times the file's orientation where it is per
        camera; identity at frames without parameters."""
        end = self.num_frames if end is None else end
        out = np.tile(np.eye(3), (end - start, 1, 1))
        frames = [t for t in np.nonzero(self.valid)[0] if start <= t < end]
        if self.orient_frame == "world":
            for t in frames:
                out[t - start] = self.global_orient[t]
            return out
        if cam_to_world is None:
            raise ValueError(f"instance {self.instance}: its orientation is per camera; pass cam_to_world")
        for t in frames:
            cam = int(self.selected_cam[t])
            if cam not in cam_to_world:
                raise SMPLFileError(f"instance {self.instance}, frame {t}: selected_cam_idx {cam} is not one of "
                                    f"the cameras {sorted(cam_to_world)}")
            out[t - start] = np.asarray(cam_to_world[cam][t - start], float)[:3, :3] @ self.global_orient[t]
        return out

    def rotmats(self, cam_to_world: Optional[Mapping[int, np.ndarray]] = None, start: int = 0,
                end: Optional[int] = None) -> np.ndarray:
        """[end - start, J, 3, 3]: the world orientation then the body pose (SMPLNodes' rotmats per frame)."""
        end = self.num_frames if end is None else end
        return np.concatenate([self.world_orient(cam_to_world, start, end)[:, None], self.body_pose[start:end]], 1)

    def mean_betas(self) -> np.ndarray:
        """[B]: the shape over the valid frames (one canonical body per person)."""
        return self.betas[self.valid].mean(0) if self.valid.any() else np.zeros(self.betas.shape[1])


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _rot(path, inst, key, x, T, per_frame_joints: Optional[int]):
    """Rotation matrices [T, n, 3, 3] from rotmats or axis-angles."""
    a = _np(x).astype(np.float64)
    if a.shape[:1] != (T,):
        raise SMPLFileError(f"{path}: instance {inst}: {key} has {a.shape[0] if a.ndim else 0} frames, expected {T}")
    if a.shape[-2:] == (3, 3):
        a = a.reshape(T, -1, 3, 3)
    elif a.shape[-1] == 3:
        a = rodrigues(torch.from_numpy(a.reshape(T, -1, 3))).numpy()
    else:
        raise SMPLFileError(f"{path}: instance {inst}: {key} has shape {list(a.shape)}, expected "
                            f"[T, n, 3, 3] rotation matrices or [T, n, 3] axis-angles")
    if per_frame_joints is not None and a.shape[1] != per_frame_joints:
        raise SMPLFileError(f"{path}: instance {inst}: {key} has {a.shape[1]} rotations per frame, expected "
                            f"{per_frame_joints}")
    return a


def parse_humanpose(data, path: Union[str, Path] = SMPL_FILE) -> Dict[int, HumanTrack]:
    """Check and convert the unpickled content of a humanpose/smpl.pkl."""
    if not isinstance(data, dict):
        raise SMPLFileError(f"{path}: expected a dict of instance id -> parameters, got {type(data).__name__}")
    out = {}
    for key, rec in data.items():
        try:
            inst = int(key)
        except (TypeError, ValueError):
            raise SMPLFileError(f"{path}: instance key {key!r} is not an instance id (an integer)") from None
        if not isinstance(rec, dict) or "smpl" not in rec or not isinstance(rec["smpl"], dict):
            raise SMPLFileError(f"{path}: instance {inst}: expected a dict with 'smpl' (global_orient, body_pose, "
                                f"betas) and 'valid_mask'")
        smpl = rec["smpl"]
        missing = [k for k in ("global_orient", "body_pose", "betas") if k not in smpl] + \
                  [k for k in ("valid_mask",) if k not in rec]
        if missing:
            raise SMPLFileError(f"{path}: instance {inst}: missing {missing}")
        valid = _np(rec["valid_mask"]).astype(bool).reshape(-1)
        T = len(valid)
        orient = _rot(path, inst, "global_orient", smpl["global_orient"], T, 1)[:, 0]
        body = _rot(path, inst, "body_pose", smpl["body_pose"], T, None)
        betas = _np(smpl["betas"]).astype(np.float64)
        if betas.ndim != 2 or betas.shape[0] != T:
            raise SMPLFileError(f"{path}: instance {inst}: betas has shape {list(betas.shape)}, expected [{T}, B]")
        frame = rec.get("orient_frame", "camera")
        if frame not in ("camera", "world"):
            raise SMPLFileError(f"{path}: instance {inst}: orient_frame {frame!r}, expected 'camera' or 'world'")
        cam = None
        if frame == "camera":
            if "selected_cam_idx" not in rec:
                raise SMPLFileError(f"{path}: instance {inst}: missing 'selected_cam_idx' (the camera whose frame "
                                    f"global_orient is in)")
            cam = _np(rec["selected_cam_idx"]).astype(np.int64).reshape(-1)
            if len(cam) != T:
                raise SMPLFileError(f"{path}: instance {inst}: selected_cam_idx has {len(cam)} frames, expected {T}")
            if (cam[valid] < 0).any():
                raise SMPLFileError(f"{path}: instance {inst}: a valid frame has selected_cam_idx -1")
        transl = None
        if "transl" in rec:
            transl = _np(rec["transl"]).astype(np.float64)
            if transl.shape != (T, 3):
                raise SMPLFileError(f"{path}: instance {inst}: transl has shape {list(transl.shape)}, expected [{T}, 3]")
        for name, a in (("global_orient", orient), ("body_pose", body), ("betas", betas)):
            if not np.isfinite(a[valid]).all():
                raise SMPLFileError(f"{path}: instance {inst}: {name} holds non-finite values at valid frames")
        out[inst] = HumanTrack(inst, orient, body, betas, valid, cam, transl, frame)
    return out


def read_humanpose(scene_dir: Union[str, Path]) -> Dict[int, HumanTrack]:
    """The pedestrians' SMPL parameters of a processed scene (its humanpose/smpl.pkl)."""
    path = Path(scene_dir) / SMPL_FILE
    if not path.is_file():
        raise SMPLFileError(f"{path}: not found (drivestudio's human-pose preprocessing writes it)")
    try:
        data = safe_pickle_load(path, allow_torch=True)
    except BodyModelError as e:
        raise SMPLFileError(str(e)) from None
    return parse_humanpose(data, path)


def humanpose_record(global_orient: np.ndarray, body_pose: np.ndarray, betas: np.ndarray, valid: np.ndarray,
                     selected_cam: Optional[np.ndarray] = None, transl: Optional[np.ndarray] = None) -> dict:
    """One instance's entry in drivestudio's layout (torch tensors): ``global_orient [T, 3, 3]`` in the
    camera frame of ``selected_cam [T]``, or in the world where ``selected_cam`` is None."""
    T = len(valid)
    rec = {"smpl": {"global_orient": torch.as_tensor(np.asarray(global_orient, np.float32)).reshape(T, 1, 3, 3),
                    "body_pose": torch.as_tensor(np.asarray(body_pose, np.float32)),
                    "betas": torch.as_tensor(np.asarray(betas, np.float32))},
           "valid_mask": torch.as_tensor(np.asarray(valid, bool)),
           "matched_mask": torch.as_tensor(np.asarray(valid, bool)),
           "must_appear_mask": torch.as_tensor(np.asarray(valid, bool))}
    if selected_cam is None:
        rec["orient_frame"] = "world"
    else:
        rec["selected_cam_idx"] = torch.as_tensor(np.asarray(selected_cam, np.int64))
    if transl is not None:
        rec["transl"] = torch.as_tensor(np.asarray(transl, np.float32))
    return rec


def write_humanpose(scene_dir: Union[str, Path], records: Mapping[int, dict]) -> Path:
    """Write ``{instance id: humanpose_record(...)}`` as scene_dir/humanpose/smpl.pkl (a plain pickle
    of torch tensors, which joblib.load reads as drivestudio does)."""
    path = Path(scene_dir) / SMPL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pkl.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump({int(k): v for k, v in records.items()}, fh, protocol=4)
    tmp.replace(path)
    return path


@dataclass
class HumanPoses:
    """The pedestrians of a scene stacked for SMPLNodes (torch, float32), in a given instance order."""

    instances: list            # instance ids, the order of the I axis
    rotmats: torch.Tensor      # [T, I, J, 3, 3] joint 0 the world orientation (identity where not valid)
    valid: torch.Tensor        # [T, I] bool
    betas: torch.Tensor        # [I, B] the mean shape over valid frames
    root: Optional[torch.Tensor]   # [T, I, 3] the root joint in the world, where every track has transl


def stack_humanposes(tracks: Mapping[int, HumanTrack], instances, cam_to_world=None,
                     world_from_log: Optional[np.ndarray] = None, start: int = 0,
                     end: Optional[int] = None) -> HumanPoses:
    """Frames [start, end) of ``tracks`` for ``instances`` (ids; one missing from the file is an error).
    ``cam_to_world`` {camera id: [end - start, 4, 4]} (in the scene's world, as a trainer holds its
    cameras) resolves per-camera orientations; ``world_from_log`` [4, 4] (e.g. inv(ego_pose[start]))
    turns what the file holds in its own world (that of instances_info.json: transl, world-frame
    orientations) into the scene's, as the reader does for the boxes."""
    missing = [i for i in instances if int(i) not in tracks]
    if missing:
        raise SMPLFileError(f"{SMPL_FILE}: no parameters for instances {missing} (it has {sorted(tracks)})")
    W = np.eye(4) if world_from_log is None else np.asarray(world_from_log, float)
    rot, valid, betas, roots = [], [], [], []
    for i in instances:
        tr = tracks[int(i)]
        stop = tr.num_frames if end is None else end
        if not 0 <= start < stop <= tr.num_frames:
            raise SMPLFileError(f"{SMPL_FILE}: instance {int(i)}: frames [{start}, {stop}) outside its "
                                f"{tr.num_frames} frames")
        sl = slice(start, stop)
        R = tr.rotmats(cam_to_world, start, stop)
        if tr.orient_frame == "world":          # the file's world; per-camera ones are in cam_to_world's
            R[:, 0] = np.einsum("ij,tjk->tik", W[:3, :3], R[:, 0])
        rot.append(R)
        valid.append(tr.valid[sl])
        betas.append(tr.mean_betas())
        if tr.transl is not None:
            roots.append(tr.transl[sl] @ W[:3, :3].T + W[:3, 3])
    as_t = lambda a: torch.as_tensor(np.stack(a, 1), dtype=torch.float32)
    return HumanPoses([int(i) for i in instances], as_t(rot), torch.as_tensor(np.stack(valid, 1)),
                      torch.as_tensor(np.stack(betas), dtype=torch.float32),
                      as_t(roots) if len(roots) == len(rot) and roots else None)
