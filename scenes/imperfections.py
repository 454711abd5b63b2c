"""The ground truth of a synthetic scene's camera imperfections (gt/imperfections.json), read back.

The generator (scenes/synthetic.py, keys pose_noise_m ... vignetting) writes noisy ego poses and
exposed images, and the truth beside them. This gives what pose refinement and per-camera appearance
are measured against:

    load_imperfections(scene_root) -> Imperfections | None          None: no imperfections written
    true_camera_to_world(scene, view, imperfections=None)           torch float32 [4, 4] (the view's device)
    true_camera_to_world_np(scene, frame_idx, cam, imperfections=None)   float64 numpy [4, 4]
    true_exposure(scene, view, imperfections=None)                  torch float32 [3] gain x white balance
    true_vignetting(scene, view, imperfections=None)                torch float32 [H, W] falloff at the
                                                                    view's (loaded) resolution

Poses are the loader's (scenes/driving_dataset.py): OpenCV axes, in the loaded scene's world,
scene.world_from_log @ camera_to_log(t, cam) with the true ego poses in place of ego_pose/. With
start_frame 0 that world is the true first ego frame (frame 0 carries no noise). With a later
start_frame it is the written (noisy) ego pose of that frame, which is also where the loader puts
the GT mesh, so truth and mesh stay in one frame. A synthetic scene without imperfections is exact:
its written poses are the truth and its multipliers are 1. Exposure is what multiplies the clean
image (before clipping and uint8 rounding): image = clean * true_exposure * true_vignetting.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import SceneFormatError
from .processed_layout import LayoutIndex, read_matrix
from .sources import get_format
from .camera_imperfections import IMPERFECTION_KEYS, IMPERFECTIONS_FILE, vignette_falloff


@dataclass
class Imperfections:
    """gt/imperfections.json of one scene folder (cameras keyed by their file names, "0", "1", ...)."""

    root: Path
    params: dict                    # the imperfection keys and their values
    cameras: list                   # camera names the scene was written with
    true_ego_poses: np.ndarray      # [T, 4, 4] ego -> log world, what ego_pose/ holds without noise
    pose_deltas: np.ndarray         # [T, 4, 4] ego-frame deltas: written ego pose = true @ delta
    camera_gain: dict               # cam -> float
    frame_gain: dict                # cam -> [T] float
    white_balance: dict             # cam -> [3] float (R, G, B)
    vignetting: float
    raw: dict                       # the whole file (noise and drift components too)

    @property
    def num_frames(self) -> int:
        return len(self.true_ego_poses)

    def exposure(self, frame_idx: int, cam) -> np.ndarray:
        """float64 [3]: the multiplier of image (frame_idx, cam) (gain x white balance, no vignetting)."""
        cam = self._camera(cam)
        return self.camera_gain[cam] * self.frame_gain[cam][self._frame(frame_idx)] * self.white_balance[cam]

    def vignette(self, width: int, height: int) -> np.ndarray:
        """float64 [height, width]: the vignetting falloff at that resolution's pixel centres."""
        return vignette_falloff(width, height, self.vignetting)

    def _camera(self, cam) -> str:
        cam = str(cam)
        if cam not in self.camera_gain:
            raise KeyError(f"{self.root / IMPERFECTIONS_FILE}: no camera {cam!r}; the scene has {self.cameras}")
        return cam

    def _frame(self, frame_idx: int) -> int:
        t = int(frame_idx)
        if not 0 <= t < self.num_frames:
            raise IndexError(f"{self.root / IMPERFECTIONS_FILE}: no frame {t}; the scene has frames "
                             f"0..{self.num_frames - 1}")
        return t


def load_imperfections(scene_root) -> Optional[Imperfections]:
    """The scene's imperfections, or None when it has no gt/imperfections.json (generated exact)."""
    path = Path(scene_root) / IMPERFECTIONS_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        pose, exposure = doc["pose"], doc["exposure"]
        cams = [str(c) for c in doc["cameras"]]
        imp = Imperfections(
            root=Path(scene_root), params={k: float(doc["params"][k]) for k in IMPERFECTION_KEYS}, cameras=cams,
            true_ego_poses=np.asarray(pose["true_ego_to_log"], np.float64).reshape(-1, 4, 4),
            pose_deltas=np.asarray(pose["delta"], np.float64).reshape(-1, 4, 4),
            camera_gain={c: float(exposure["camera_gain"][c]) for c in cams},
            frame_gain={c: np.asarray(exposure["frame_gain"][c], np.float64) for c in cams},
            white_balance={c: np.asarray(exposure["white_balance"][c], np.float64).reshape(3) for c in cams},
            vignetting=float(exposure["vignetting"]), raw=doc)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SceneFormatError(f"{path}: expected the imperfections file scenes/synthetic.py writes; "
                               f"found an unreadable one ({type(e).__name__}: {e})") from None
    T = len(imp.true_ego_poses)
    if len(imp.pose_deltas) != T or any(len(g) != T for g in imp.frame_gain.values()):
        raise SceneFormatError(f"{path}: expected {T} frames in every per-frame list (as true_ego_to_log)")
    return imp


def _synthetic(root: Path) -> bool:
    try:
        return json.loads((root / "gt" / "meta.json").read_text()).get("generator") == "scenes.synthetic"
    except (OSError, ValueError):
        return False


def true_camera_to_world_np(scene, frame_idx: int, cam, imperfections: Optional[Imperfections] = None) -> np.ndarray:
    """float64 [4, 4]: the true OpenCV camera -> world of (frame_idx, cam) of a loaded DrivingScene, in
    its world (scene.world_from_log), as the loader would have built it from noise-free ego poses."""
    root = Path(scene.root)
    imp = imperfections if imperfections is not None else load_imperfections(root)
    t, cam = int(frame_idx), str(cam)
    if imp is None:
        if not _synthetic(root):
            raise SceneFormatError(f"{root / 'gt' / 'meta.json'}: expected a scene of scenes/synthetic.py (the only "
                                   "scenes whose true camera poses are known)")
        ego = read_matrix(root / "ego_pose" / f"{t:03d}.txt")   # written exact
    else:
        ego = imp.true_ego_poses[imp._frame(t)]
    fmt = get_format(scene.dataset)
    if fmt.poses != "ego_pose" or fmt.extrinsics != "camera_to_ego":
        raise SceneFormatError(f"{root}: expected a scene with ego poses and camera -> ego extrinsics (the "
                               f"synthetic street's Waymo layout); found the {fmt.title} layout")
    # The loader's LayoutIndex.camera_to_log, with the true ego pose in place of the written one.
    index = LayoutIndex(root=root, dataset=fmt, num_frames=t + 1, cameras=[cam], ego_poses={t: ego}, lidar_poses=None,
                        extrinsics={cam: read_matrix(root / "extrinsics" / f"{cam}.txt")}, intrinsics={}, images={})
    return np.asarray(scene.world_from_log, np.float64) @ index.camera_to_log(t, cam)


def true_camera_to_world(scene, view, imperfections: Optional[Imperfections] = None) -> torch.Tensor:
    """float32 [4, 4] on the view's device: the true counterpart of view.camera_to_world."""
    c2w = true_camera_to_world_np(scene, view.frame_idx, view.cam_name, imperfections)
    return torch.tensor(c2w, dtype=torch.float32, device=view.camera_to_world.device)


def true_exposure(scene, view, imperfections: Optional[Imperfections] = None) -> torch.Tensor:
    """float32 [3] on the view's device: the gain x white balance of the view's image (ones if exact)."""
    imp = imperfections if imperfections is not None else load_imperfections(scene.root)
    m = np.ones(3) if imp is None else imp.exposure(view.frame_idx, view.cam_name)
    return torch.tensor(m, dtype=torch.float32, device=view.image.device)


def true_vignetting(scene, view, imperfections: Optional[Imperfections] = None) -> torch.Tensor:
    """float32 [H, W] on the view's device: the vignetting falloff at the view's resolution (ones if exact)."""
    imp = imperfections if imperfections is not None else load_imperfections(scene.root)
    v = np.ones((view.height, view.width)) if imp is None else imp.vignette(view.width, view.height)
    return torch.tensor(v, dtype=torch.float32, device=view.image.device)


__all__ = ["Imperfections", "load_imperfections", "true_camera_to_world", "true_camera_to_world_np", "true_exposure",
           "true_vignetting"]
