"""The synthetic street's camera imperfections, generator side: the keys and their ranges, the draws
(pose noise and drift, per-camera and per-frame gain, white balance, vignetting; each kind from a
generator of its own, so switching one on changes neither the street nor the others) and
gt/imperfections.json, their ground truth. scenes/synthetic.py applies them; scenes/imperfections.py
reads the file back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import make_pose, rot_z

# Camera imperfections: key -> (default, exclusive upper bound or None, meaning); each is >= 0.
# A key at its default is left out of the digest and of gt/meta.json's params, so scenes generated
# before these keys existed keep their cache folders and bytes.
IMPERFECTION_KEYS = {
    "pose_noise_m": (0.0, None, "sigma (m) of the per-frame ego translation noise, per axis"),
    "pose_noise_deg": (0.0, None, "sigma (degrees) of the per-frame ego rotation noise angle"),
    "pose_drift_m": (0.0, None, "ego drift (m, and degrees of yaw) reached at the last frame"),
    "exposure_gain": (0.0, 1.0, "per-camera gains are drawn in [1-g, 1+g]"),
    "exposure_frame_gain": (0.0, 1.0, "per-frame-and-camera gains are drawn in [1-g, 1+g]"),
    "white_balance": (0.0, 1.0, "per-camera channel multipliers are drawn in [1-w, 1+w]"),
    "vignetting": (0.0, 1.0, "falloff 1 - v*r^2, r = 1 at the image corners"),
}
IMPERFECTIONS_FILE = "gt/imperfections.json"
IMPERFECTION_STREAM = 0x5EED1  # seeds the imperfections' generator apart from the street's


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation [3, 3] by `angle` radians about the unit vector `axis` (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def vignette_falloff(width: int, height: int, strength: float) -> np.ndarray:
    """[height, width] factors 1 - strength * r^2 at the pixel centres (+0.5), r = distance from the
    image centre over the centre-to-corner distance (r = 1 at the corners)."""
    du = np.arange(width) + 0.5 - width / 2
    dv = np.arange(height) + 0.5 - height / 2
    r2 = (du[None, :] ** 2 + dv[:, None] ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    return 1.0 - strength * r2


@dataclass
class CameraImperfections:
    """What was done to the written poses and images (the ground truth of gt/imperfections.json).

    Poses: the ego pose written for frame t is true_ego @ pose_delta[t], the delta in the ego frame
    (x forward, y left, z up): rotation = rot_z(drift_yaw[t]) @ R(noise_axis[t], noise_angle[t]),
    translation = drift_translation[t] + translation_noise[t]. Frame 0 is exact (it anchors the
    loader's world frame); the drift grows linearly, in a random ground-plane direction, to
    pose_drift_m metres and a yaw of pose_drift_m degrees (random sign) at the last frame. Images,
    depth and LiDAR (in the ego frame) come from the true poses.
    Images: clip(clean * camera_gain[cam] * frame_gain[cam][t] * white_balance[cam] * falloff, 0, 1)
    before uint8, falloff = vignette_falloff(width, height, vignetting).
    """

    pose_delta: np.ndarray          # [T, 4, 4]
    translation_noise: np.ndarray   # [T, 3] metres, ego axes
    noise_axis: np.ndarray          # [T, 3] unit vectors, ego axes
    noise_angle: np.ndarray         # [T] radians
    drift_translation: np.ndarray   # [T, 3] metres, ego axes (z = 0)
    drift_yaw: np.ndarray           # [T] radians about ego z
    camera_gain: dict               # cam -> float
    frame_gain: dict                # cam -> [T] float
    white_balance: dict             # cam -> [3] float (R, G, B)
    vignetting: float

    def exposure(self, t: int, cam: int) -> np.ndarray:
        """[3] multiplier of frame t's image of camera cam (gain x white balance; no vignetting)."""
        return self.camera_gain[cam] * self.frame_gain[cam][t] * self.white_balance[cam]

    def apply_exposure(self, image: np.ndarray, t: int, cam: int) -> np.ndarray:
        """The image [H, W, 3] in [0, 1] as the imperfect camera records it (clipped to [0, 1])."""
        falloff = vignette_falloff(image.shape[1], image.shape[0], self.vignetting)
        return np.clip(image * self.exposure(t, cam) * falloff[..., None], 0.0, 1.0)


def _imperfection_rng(seed: int, stream: int) -> np.random.Generator:
    """A generator of its own per kind of imperfection: the street's draws (default_rng(seed)) and the
    other imperfections' draws do not change when one is switched on."""
    return np.random.default_rng([IMPERFECTION_STREAM, stream, int(seed)])


def draw_imperfections(params, camera_ids) -> CameraImperfections | None:
    """The imperfections of a scene of `params` (scenes.synthetic.SyntheticParams), or None when every
    imperfection key is off. `camera_ids`: every camera the generator knows, in order."""
    if not (params.pose_imperfect or params.exposure_imperfect):
        return None
    T = params.num_frames
    rng = _imperfection_rng(params.seed, 0)
    translation = rng.standard_normal((T, 3)) * params.pose_noise_m
    axis = rng.standard_normal((T, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.standard_normal(T) * np.radians(params.pose_noise_deg)
    rng = _imperfection_rng(params.seed, 1)
    heading = rng.uniform(-np.pi, np.pi)
    yaw_sign = 1.0 if rng.uniform() < 0.5 else -1.0
    ramp = np.arange(T) / max(T - 1, 1)
    drift = params.pose_drift_m * ramp[:, None] * np.array([np.cos(heading), np.sin(heading), 0.0])
    drift_yaw = yaw_sign * np.radians(params.pose_drift_m) * ramp
    translation[0] = 0.0
    angle[0] = 0.0
    delta = np.stack([make_pose(rot_z(drift_yaw[t]) @ axis_angle_matrix(axis[t], angle[t]), drift[t] + translation[t])
                      for t in range(T)])
    delta[0] = np.eye(4)
    # Drawn for every camera the generator knows (ids in order), so a camera's values do not depend
    # on which cameras are written.
    ids = sorted(camera_ids)
    gain = 1.0 + params.exposure_gain * _imperfection_rng(params.seed, 2).uniform(-1, 1, len(ids))
    frame_gain = 1.0 + params.exposure_frame_gain * _imperfection_rng(params.seed, 3).uniform(-1, 1, (len(ids), T))
    balance = 1.0 + params.white_balance * _imperfection_rng(params.seed, 4).uniform(-1, 1, (len(ids), 3))
    return CameraImperfections(
        pose_delta=delta, translation_noise=translation, noise_axis=axis, noise_angle=angle,
        drift_translation=drift, drift_yaw=drift_yaw,
        camera_gain={c: float(gain[i]) for i, c in enumerate(ids) if c in params.cameras},
        frame_gain={c: frame_gain[i].copy() for i, c in enumerate(ids) if c in params.cameras},
        white_balance={c: balance[i].copy() for i, c in enumerate(ids) if c in params.cameras},
        vignetting=float(params.vignetting))


def _fixed(m: np.ndarray) -> list:
    """The values as _write_matrix's text holds them (10 decimals), as nested lists."""
    return np.vectorize(lambda x: float(f"{x:.10f}"))(m).tolist()


def write_imperfections(path: Path, scene) -> None:
    """gt/imperfections.json of a generated scene (scenes.synthetic.StreetScene with its imperfections)."""
    p, imp = scene.params, scene.imperfections
    L = scene.log_from_street
    T = p.num_frames
    cams = [str(c) for c in p.cameras]
    doc = {
        "description": "Camera imperfections of a synthetic scene (scenes/camera_imperfections.py CameraImperfections) and "
                       "their ground truth; scenes/imperfections.py reads this file",
        "params": {k: getattr(p, k) for k in IMPERFECTION_KEYS},
        "seed": p.seed,
        "num_frames": T,
        "cameras": cams,
        "pose": {
            "convention": "ego_pose/{t}.txt = true_ego_to_log[t] @ delta[t] (ego -> log world, Waymo axes); delta "
                          "is in the ego frame: rotation rot_z(drift_yaw_deg) @ R(noise_axis, noise_angle_deg), "
                          "translation drift_translation_m + translation_noise_m; frame 0 exact; images, depth "
                          "and LiDAR (ego frame) are the true poses'",
            "true_ego_to_log": [_fixed(L @ scene.ego_street[t]) for t in range(T)],
            "delta": imp.pose_delta.tolist(),
            "translation_noise_m": imp.translation_noise.tolist(),
            "noise_axis": imp.noise_axis.tolist(),
            "noise_angle_deg": np.degrees(imp.noise_angle).tolist(),
            "drift_translation_m": imp.drift_translation.tolist(),
            "drift_yaw_deg": np.degrees(imp.drift_yaw).tolist(),
        },
        "exposure": {
            "convention": "images/{t}_{cam} = round(255 * clip(clean * camera_gain[cam] * frame_gain[cam][t] * "
                          "white_balance[cam] * (1 - vignetting * r^2), 0, 1)), r = distance of the pixel centre "
                          "from the image centre over the centre-to-corner distance; RGB order",
            "camera_gain": {str(c): imp.camera_gain[c] for c in p.cameras},
            "frame_gain": {str(c): imp.frame_gain[c].tolist() for c in p.cameras},
            "white_balance": {str(c): imp.white_balance[c].tolist() for c in p.cameras},
            "vignetting": imp.vignetting,
        },
    }
    path.write_text(json.dumps(doc, indent=1))
