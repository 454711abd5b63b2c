"""What a run learns about its cameras besides the Gaussians: pose refinement, per-camera appearance
and a sky over view direction (config section ``cameras``, docs/design.md).

``PoseRefinement``   an SE(3) correction per frame (the rig moves as one: every camera of a frame
                     shares it, a rotation about the frame's rig centre in world axes) or per image
                     (a correction in the camera's own axes, drivestudio's CameraOptModule form).
                     Zero at the start, the first slot held there (the gauge); ``refine(c2w, slot)``
                     is differentiable with respect to the others.
``AffineAppearance`` a 3x4 colour transform per camera (drivestudio's AffineTransform form), the
                     first camera held at the identity (the reference that fixes the canonical
                     appearance: without it, every camera's transform and the Gaussians' colours
                     could drift together), plus optionally a per-image gain and offset per channel.
``EnvironmentMap``   the sky: a cube map of colours over the world view direction (drivestudio's
                     EnvLight form), composited behind the Gaussians in place of the flat background.

Every product here is written as elementwise multiply-adds in a fixed order (models.cameras.matmul3):
no MKL call, so a run gives the same bits on every CPU.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from models.cameras import Camera, matmul3, matvec3

POSE_MODES = ("frame", "image")
APPEARANCE_MODES = ("camera", "camera+image")
SKY_MODELS = ("background", "envmap")


# ----- SO(3) / SE(3) -------------------------------------------------------------------------------
def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [3, 3] of an axis-angle vector [3] (Rodrigues), with finite gradients at 0."""
    theta2 = (omega[0] * omega[0] + omega[1] * omega[1]) + omega[2] * omega[2]
    small = theta2 < 1e-8
    safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = torch.sqrt(safe)
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / safe)
    zero = torch.zeros_like(omega[0])
    k = torch.stack([torch.stack([zero, -omega[2], omega[1]]),
                     torch.stack([omega[2], zero, -omega[0]]),
                     torch.stack([-omega[1], omega[0], zero])])
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * k + b * matmul3(k, k)


def rotation_angle_deg(r: torch.Tensor) -> torch.Tensor:
    """The angle (degrees) of rotation matrices [..., 3, 3]."""
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    return torch.rad2deg(torch.acos(((trace - 1.0) / 2.0).clamp(-1.0, 1.0)))


def _rigid(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    bottom = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=r.dtype, device=r.device)
    return torch.cat([torch.cat([r, t[:, None]], 1), bottom], 0)


def compose_rigid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` of two rigid 4x4 transforms, as fixed-order multiply-adds."""
    return _rigid(matmul3(a[:3, :3], b[:3, :3]), matvec3(a[:3, :3], b[:3, 3]) + a[:3, 3])


def _so3_host(w: Sequence[float]):
    """Rodrigues on host floats (float64): R, a, b, K and K² of R = I + a K + b K² (so3_exp's branches)."""
    t2 = (w[0] * w[0] + w[1] * w[1]) + w[2] * w[2]
    if t2 < 1e-8:
        a, b = 1.0 - t2 / 6.0, 0.5 - t2 / 24.0
    else:
        th = math.sqrt(t2)
        a, b = math.sin(th) / th, (1.0 - math.cos(th)) / t2
    k = [[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]]
    k2 = _mm(k, k)
    r = [[(1.0 if i == j else 0.0) + a * k[i][j] + b * k2[i][j] for j in range(3)] for i in range(3)]
    return r, a, b, k, k2


def _mm(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> List[List[float]]:
    return [[(a[i][0] * b[0][j] + a[i][1] * b[1][j]) + a[i][2] * b[2][j] for j in range(3)] for i in range(3)]


def _so3_vjp(w: Sequence[float], a: float, b: float, k: Sequence[Sequence[float]], k2: Sequence[Sequence[float]],
             g: Sequence[Sequence[float]]) -> List[float]:
    """dL/dω of R(ω) = I + a(θ²) K + b(θ²) K², given dL/dR = g: the exact derivative of the branch the
    forward took (its series below θ² = 1e-8), so it agrees with autograd through so3_exp."""
    t2 = (w[0] * w[0] + w[1] * w[1]) + w[2] * w[2]
    if t2 < 1e-8:
        da, db = -1.0 / 6.0, -1.0 / 24.0
    else:
        th = math.sqrt(t2)
        c, s_ = math.cos(th), math.sin(th)
        da = (th * c - s_) / (2.0 * th * t2)
        db = (th * s_ - 2.0 * (1.0 - c)) / (2.0 * t2 * t2)
    gk = sum(g[i][j] * k[i][j] for i in range(3) for j in range(3))
    gk2 = sum(g[i][j] * k2[i][j] for i in range(3) for j in range(3))
    out = []
    for axis in range(3):
        e = [[0.0] * 3 for _ in range(3)]     # [e_axis]x
        e[(axis + 2) % 3][(axis + 1) % 3] = 1.0
        e[(axis + 1) % 3][(axis + 2) % 3] = -1.0
        ek, ke = _mm(e, k), _mm(k, e)
        ge = sum(g[i][j] * e[i][j] for i in range(3) for j in range(3))
        gsym = sum(g[i][j] * (ek[i][j] + ke[i][j]) for i in range(3) for j in range(3))
        out.append(a * ge + b * gsym + 2.0 * w[axis] * (da * gk + db * gk2))
    return out


class _RefinedPoseHost(torch.autograd.Function):
    """PoseRefinement.refine on a CPU: the corrected [4, 4] from one slot's 6 numbers, computed on host
    floats in float64 with the analytic gradient. Two tensor ops a step where the composition through
    so3_exp is ~60 small ones (and as many in its backward): the same maths, agreement to float32
    rounding (tests/test_camera_models.py)."""

    @staticmethod
    def forward(ctx, rotations, translations, c2w, slot, scale, pivot, image_mode):
        d = [float(x) * scale for x in rotations[slot].tolist() + translations[slot].tolist()]
        c = c2w.tolist()
        r, a, b, k, k2 = _so3_host(d[:3])
        if image_mode:     # c2w @ [R | t]
            out_r = [[sum(c[i][m] * r[m][j] for m in range(3)) for j in range(3)] for i in range(3)]
            out_t = [sum(c[i][m] * d[3 + m] for m in range(3)) + c[i][3] for i in range(3)]
        else:              # [R | p - R p + t] @ c2w
            p = pivot
            s = [p[i] - sum(r[i][m] * p[m] for m in range(3)) + d[3 + i] for i in range(3)]
            out_r = [[sum(r[i][m] * c[m][j] for m in range(3)) for j in range(3)] for i in range(3)]
            out_t = [sum(r[i][m] * c[m][3] for m in range(3)) + s[i] for i in range(3)]
        ctx.state = (d, c, a, b, k, k2, slot, scale, pivot, image_mode, tuple(rotations.shape))
        rows = [out_r[i] + [out_t[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]
        return torch.tensor(rows, dtype=rotations.dtype, device=rotations.device)

    @staticmethod
    def backward(ctx, grad):
        d, c, a, b, k, k2, slot, scale, pivot, image_mode, shape = ctx.state
        g = grad.tolist()
        g3 = [row[:3] for row in g[:3]]
        g4 = [g[i][3] for i in range(3)]
        if image_mode:
            gr = [[sum(c[m][i] * g3[m][j] for m in range(3)) for j in range(3)] for i in range(3)]
            gt = [sum(c[m][i] * g4[m] for m in range(3)) for i in range(3)]
        else:
            arm = [c[m][3] - pivot[m] for m in range(3)]
            gr = [[sum(g3[i][m] * c[j][m] for m in range(3)) + g4[i] * arm[j] for j in range(3)] for i in range(3)]
            gt = g4
        gw = _so3_vjp(d[:3], a, b, k, k2, gr)
        g_rot = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
        g_rot[slot] = torch.tensor([x * scale for x in gw], dtype=grad.dtype)
        g_trans = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
        g_trans[slot] = torch.tensor([x * scale for x in gt], dtype=grad.dtype)
        return g_rot, g_trans, None, None, None, None, None


# ----- pose refinement -------------------------------------------------------------------------------
class PoseRefinement(torch.nn.Module):
    """SE(3) corrections of the training cameras, one per slot (a frame or an image)."""

    def __init__(self, slot_of_view: Sequence[int], pivots: torch.Tensor, mode: str = "frame",
                 anchor_first: bool = True) -> None:
        super().__init__()
        if mode not in POSE_MODES:
            raise ValueError(f"cameras.pose.per={mode!r}: expected one of {', '.join(POSE_MODES)}")
        self.mode = mode
        self.slot_of_view: List[int] = [int(s) for s in slot_of_view]
        self.register_buffer("pivots", torch.as_tensor(pivots, dtype=torch.float32).reshape(-1, 3).clone())
        # each slot's correction: an axis-angle rotation (radians) and a translation (metres), two
        # parameters so that each has its own learning rate (cameras.pose.rotation_lr and lr)
        self.rotations = torch.nn.Parameter(torch.zeros(self.pivots.shape[0], 3))
        self.translations = torch.nn.Parameter(torch.zeros(self.pivots.shape[0], 3))
        # the first slot (the first frame, which the loader's world is aligned to) is held at zero: the
        # gauge. Without it the scene and every pose could drift together, away from the world the
        # LiDAR, the tracks and the ground truth are in
        self.anchor_first = bool(anchor_first)
        free = torch.ones(self.pivots.shape[0], 1)
        if self.anchor_first:
            free[:1] = 0.0
        self.register_buffer("free", free)
        self._host_pivots: Optional[List[List[float]]] = None   # the pivots as host floats, read once

    @classmethod
    def for_views(cls, views: Sequence[Any], mode: str = "frame") -> "PoseRefinement":
        """One slot per frame (pivot: the mean centre of the frame's cameras) or per view (pivot unused)."""
        if mode == "image":
            pivots = torch.stack([v.camera_to_world[:3, 3].detach().cpu().float() for v in views]) if views else \
                torch.zeros(0, 3)
            return cls(list(range(len(views))), pivots, mode)
        frames = sorted({int(v.frame_idx) for v in views})
        column = {f: i for i, f in enumerate(frames)}
        sums = torch.zeros(len(frames), 3, dtype=torch.float64)
        counts = torch.zeros(len(frames), dtype=torch.float64)
        for v in views:   # in view order: a fixed summation order
            sums[column[int(v.frame_idx)]] += v.camera_to_world[:3, 3].detach().cpu().double()
            counts[column[int(v.frame_idx)]] += 1
        return cls([column[int(v.frame_idx)] for v in views], (sums / counts[:, None]).float(), mode)

    @property
    def num_slots(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def deltas(self) -> torch.Tensor:
        """[slots, 6]: each slot's rotation (axis-angle, radians) then translation (metres); a new tensor."""
        return torch.cat([self.rotations, self.translations], 1)

    @torch.no_grad()
    def set_deltas(self, deltas: torch.Tensor) -> None:
        """Set every slot's correction from [slots, 6], rotation then translation (``deltas`` is a copy:
        to change one slot, edit it and set it back)."""
        deltas = torch.as_tensor(deltas).reshape(self.num_slots, 6)
        self.rotations.copy_(deltas[:, :3])
        self.translations.copy_(deltas[:, 3:])

    def delta(self, slot: int) -> torch.Tensor:
        """The slot's correction as a rigid 4x4 (world axes about its pivot, or camera axes)."""
        d = torch.cat([self.rotations[slot], self.translations[slot]]) * self.free[slot]
        r = so3_exp(d[:3])
        if self.mode == "image":
            return _rigid(r, d[3:])
        p = self.pivots[slot].to(d.dtype)
        return _rigid(r, p - matvec3(r, p) + d[3:])

    def refine(self, camera_to_world: torch.Tensor, slot: int) -> torch.Tensor:
        """The corrected camera_to_world [4, 4] of a training view in ``slot``."""
        c2w = camera_to_world.to(self.rotations.dtype)
        if self.rotations.device.type == "cpu" and not camera_to_world.requires_grad:
            if self._host_pivots is None:
                self._host_pivots = self.pivots.double().tolist()
            return _RefinedPoseHost.apply(self.rotations, self.translations, c2w, int(slot), float(self.free[slot, 0]),
                                          self._host_pivots[slot], self.mode == "image")
        delta = self.delta(slot)
        return compose_rigid(c2w, delta) if self.mode == "image" else compose_rigid(delta, c2w)

    def refine_view(self, view_index: int, camera_to_world: torch.Tensor) -> torch.Tensor:
        return self.refine(camera_to_world, self.slot_of_view[view_index])

    @torch.no_grad()
    def refined_poses(self, views: Sequence[Any]) -> List[torch.Tensor]:
        """The corrected camera_to_world of every training view (detached, float32)."""
        return [self.refine_view(i, v.camera_to_world.to(self.rotations.device)).detach().float()
                for i, v in enumerate(views)]

    def state(self) -> Dict[str, Any]:
        return {"mode": self.mode, "slot_of_view": list(self.slot_of_view), "pivots": self.pivots.detach().cpu().clone(),
                "deltas": self.deltas.detach().cpu().clone(), "anchor_first": self.anchor_first}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "PoseRefinement":
        m = cls(list(state["slot_of_view"]), torch.as_tensor(state["pivots"]), str(state["mode"]),
                bool(state.get("anchor_first", True)))
        m.load(state)
        return m

    def load(self, state: Mapping[str, Any]) -> None:
        deltas = torch.as_tensor(state["deltas"])
        if tuple(deltas.shape) != (self.num_slots, 6) or list(state["slot_of_view"]) != self.slot_of_view:
            raise ValueError(f"pose refinement of shape {tuple(deltas.shape)} for {len(state['slot_of_view'])} views, "
                             f"expected {(self.num_slots, 6)} for {len(self.slot_of_view)} "
                             f"(cameras.pose.per={self.mode!r} on the same scene)")
        self.set_deltas(deltas.to(self.rotations.device, self.rotations.dtype))


@torch.no_grad()
def held_out_pose(refinement: Optional[PoseRefinement], train_views: Sequence[Any], view: Any) -> torch.Tensor:
    """A held-out view's camera_to_world with the correction of the nearest training view's slot (per
    frame: the nearest frame; per image: the same camera's nearest frame; the lower frame on a tie)."""
    c2w = view.camera_to_world
    if refinement is None or not train_views:
        return c2w
    candidates = [i for i, v in enumerate(train_views)
                  if refinement.mode == "frame" or str(v.cam_name) == str(view.cam_name)]
    if not candidates:
        return c2w
    best = min(candidates, key=lambda i: (abs(int(train_views[i].frame_idx) - int(view.frame_idx)),
                                          int(train_views[i].frame_idx), i))
    slot = refinement.slot_of_view[best]
    c2w = c2w.to(refinement.rotations.device, refinement.rotations.dtype)
    delta = refinement.delta(slot)
    out = compose_rigid(c2w, delta) if refinement.mode == "image" else compose_rigid(delta, c2w)
    return out.detach().float()


def similarity_to(src: torch.Tensor, dst: torch.Tensor) -> Tuple[float, torch.Tensor, torch.Tensor]:
    """The similarity (scale s, rotation R, translation t) that takes points src [N, 3] closest to dst in
    least squares, s R src + t (Umeyama), float64."""
    src, dst = src.double(), dst.double()
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / src.shape[0]
    u, sig, vt = torch.linalg.svd(cov)
    fix = torch.eye(3, dtype=torch.float64)
    if float(torch.linalg.det(u @ vt)) < 0:
        fix[2, 2] = -1.0
    r = u @ fix @ vt
    var = float((a * a).sum() / src.shape[0])
    scale = float((sig * torch.diagonal(fix)).sum()) / var if var > 0 else 1.0
    return scale, r, mu_d - scale * (r @ mu_s)


def pose_errors(estimated: Sequence[torch.Tensor], truth: Sequence[torch.Tensor], align: bool = False
                ) -> Dict[str, float]:
    """Mean and max camera-centre error (m) and rotation error (degrees) of poses against the truth. With
    ``align`` the estimate is first moved by the similarity that best fits its camera centres to the
    truth's (the trajectory error of the pose-refinement literature: what is left once the gauge, the
    world's scale and placement that images alone cannot fix, is taken out); ``scale`` says by how much."""
    est = torch.stack([e.double().cpu() for e in estimated])
    gt = torch.stack([t.double().cpu() for t in truth])
    scale = 1.0
    if align:
        scale, r, t = similarity_to(est[:, :3, 3], gt[:, :3, 3])
        est = est.clone()
        est[:, :3, 3] = scale * est[:, :3, 3] @ r.T + t
        est[:, :3, :3] = r @ est[:, :3, :3]
    dt = (est[:, :3, 3] - gt[:, :3, 3]).norm(dim=1)
    dr = rotation_angle_deg(gt[:, :3, :3].transpose(1, 2) @ est[:, :3, :3])
    return {"translation_mean_m": float(dt.mean()), "translation_max_m": float(dt.max()),
            "rotation_mean_deg": float(dr.mean()), "rotation_max_deg": float(dr.max()), "views": len(est),
            **({"scale": scale} if align else {})}


# ----- appearance ----------------------------------------------------------------------------------------
class AffineAppearance(torch.nn.Module):
    """rgb -> A rgb + b per camera (the first camera fixed at the identity), times an optional
    per-training-image gain and plus its offset."""

    def __init__(self, cameras: Sequence[str], num_images: int = 0, mode: str = "camera") -> None:
        super().__init__()
        if mode not in APPEARANCE_MODES:
            raise ValueError(f"cameras.appearance.per={mode!r}: expected one of {', '.join(APPEARANCE_MODES)}")
        self.mode = mode
        self.cameras: List[str] = [str(c) for c in cameras]
        self._index = {c: i for i, c in enumerate(self.cameras)}
        # rows of [A | b] minus the identity, for every camera but the reference
        self.affine = torch.nn.Parameter(torch.zeros(max(0, len(self.cameras) - 1), 3, 4))
        n = int(num_images) if mode == "camera+image" else 0
        self.image = torch.nn.Parameter(torch.zeros(n, 6))   # gain - 1 and offset per channel

    def matrix(self, cam_name: str) -> Optional[torch.Tensor]:
        """[3, 4] of a camera, None for the reference camera and for cameras it has not seen."""
        i = self._index.get(str(cam_name))
        if not i:
            return None
        m = self.affine[i - 1]
        return m + torch.eye(3, 4, dtype=m.dtype, device=m.device)

    def transform(self, cam_name: str, image_index: Optional[int] = None) -> Optional[torch.Tensor]:
        """The [3, 4] that takes a canonical colour to the camera's (and the training image's, with
        ``image_index``): the image's gain and offset folded into the camera's matrix. None: the identity."""
        m = self.matrix(cam_name)
        if image_index is None or self.image.shape[0] == 0:
            return m
        g = self.image[image_index]
        if m is None:
            m = torch.eye(3, 4, dtype=g.dtype, device=g.device)
        gain = (1.0 + g[:3])[:, None]
        return torch.cat([m[:, :3] * gain, m[:, 3:] * gain + g[3:, None]], 1)

    def forward(self, rgb: torch.Tensor, cam_name: str, image_index: Optional[int] = None) -> torch.Tensor:
        """rgb [..., 3] in the camera's appearance: on a CPU image [H, W, 3] in one compiled pass
        (csrc/colour_affine.cpp), elsewhere as multiply-adds over the channels."""
        m = self.transform(cam_name, image_index)
        if m is None:
            return rgb
        if rgb.device.type == "cpu" and rgb.dim() == 3 and rgb.dtype in (torch.float32, torch.float64):
            from models.rendering import cpp_backend
            if cpp_backend.load_extension() is not None:
                return cpp_backend.colour_affine_cpp(rgb, m)
        m = m.to(rgb.dtype)
        return ((rgb[..., 0:1] * m[:, 0] + rgb[..., 1:2] * m[:, 1]) + rgb[..., 2:3] * m[:, 2]) + m[:, 3]

    def state(self) -> Dict[str, Any]:
        return {"mode": self.mode, "cameras": list(self.cameras), "affine": self.affine.detach().cpu().clone(),
                "image": self.image.detach().cpu().clone()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "AffineAppearance":
        m = cls(list(state["cameras"]), int(torch.as_tensor(state["image"]).shape[0]), str(state["mode"]))
        m.load(state)
        return m

    def load(self, state: Mapping[str, Any]) -> None:
        affine, image = torch.as_tensor(state["affine"]), torch.as_tensor(state["image"])
        if (list(state["cameras"]) != self.cameras or affine.shape != self.affine.shape
                or image.shape != self.image.shape):
            raise ValueError(f"appearance of cameras {list(state['cameras'])} ({tuple(image.shape)[0]} images), "
                             f"expected {self.cameras} ({self.image.shape[0]} images, cameras.appearance.per="
                             f"{self.mode!r})")
        self.affine.data.copy_(affine.to(self.affine.device))
        self.image.data.copy_(image.to(self.image.device))


# ----- sky -----------------------------------------------------------------------------------------------
class EnvironmentMap(torch.nn.Module):
    """A cube map [6, 3, R, R] of sky colours (sigmoid of the stored values) over world directions."""

    def __init__(self, resolution: int = 16, init_rgb: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        raw = torch.zeros(6, 3, int(resolution), int(resolution))
        if init_rgb is not None:
            rgb = torch.as_tensor(init_rgb, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
            raw += torch.log(rgb / (1 - rgb))[None, :, None, None]
        self.texture = torch.nn.Parameter(raw)

    @property
    def resolution(self) -> int:
        return int(self.texture.shape[-1])

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """Colours [..., 3] of world directions [..., 3] (any length), bilinear within each face."""
        shape = dirs.shape[:-1]
        d = dirs.reshape(-1, 3).to(self.texture.dtype)
        ax = d.abs()
        major = torch.argmax(ax, dim=1)            # 0: x, 1: y, 2: z; ties go to the lower axis
        sign = torch.gather(d, 1, major[:, None])[:, 0] >= 0
        face = major * 2 + (~sign).long()           # +x, -x, +y, -y, +z, -z
        m = torch.gather(ax, 1, major[:, None])[:, 0].clamp_min(1e-12)
        # the two other axes, in a fixed order per major axis, over the major one: [-1, 1]
        other = torch.tensor([[1, 2], [0, 2], [0, 1]], device=d.device)[major]
        uv = torch.gather(d, 1, other) / m[:, None]
        # one lookup in an atlas of the six faces side by side, [3, R, 6R]; coordinates clamped to the
        # face's outer texel centres, so the bilinear weights never reach into the next face
        R = self.resolution
        px = ((uv + 1.0) * (0.5 * R)).clamp(0.5, R - 0.5)
        gx = 2.0 * (face.to(px.dtype) * R + px[:, 0]) / (6 * R) - 1.0
        gy = 2.0 * px[:, 1] / R - 1.0
        atlas = torch.sigmoid(self.texture).permute(1, 2, 0, 3).reshape(1, 3, R, 6 * R)
        grid = torch.stack([gx, gy], -1)[None, :, None, :]
        colours = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return colours[0, :, :, 0].transpose(0, 1).reshape(*shape, 3)

    def render(self, camera: Camera) -> torch.Tensor:
        """[H, W, 3] sky colours seen through every pixel of a camera. The directions carry no gradient
        to the camera: a refined pose learns from the Gaussians, not from the sky. On a CPU in one
        compiled pass (csrc/envmap.cpp: the same lookup, agreement to float rounding); elsewhere, or
        without the compiled backend, as ``render_torch``."""
        if self.texture.device.type == "cpu" and self.texture.dtype in (torch.float32, torch.float64):
            from models.rendering import cpp_backend
            if cpp_backend.load_extension() is not None:
                return cpp_backend.envmap_cpp(torch.sigmoid(self.texture), camera.camera_to_world[:3, :3], camera.K,
                                              camera.width, camera.height)
        return self.render_torch(camera)

    def render_torch(self, camera: Camera) -> torch.Tensor:
        """``render`` in PyTorch: the directions through ``forward`` (any device)."""
        rays = camera.pixel_rays().detach().to(self.texture.dtype)
        r = camera.camera_to_world[:3, :3].detach().to(self.texture.dtype)
        dirs = (rays[..., 0:1] * r[:, 0] + rays[..., 1:2] * r[:, 1]) + rays[..., 2:3] * r[:, 2]
        return self(dirs)

    def mean_rgb(self) -> torch.Tensor:
        return torch.sigmoid(self.texture).mean(dim=(0, 2, 3))

    def state(self) -> Dict[str, Any]:
        return {"texture": self.texture.detach().cpu().clone()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "EnvironmentMap":
        tex = torch.as_tensor(state["texture"])
        m = cls(int(tex.shape[-1]) if tex.dim() == 4 else 1)
        m.load(state)
        return m

    def load(self, state: Mapping[str, Any]) -> None:
        tex = torch.as_tensor(state["texture"])
        if tuple(tex.shape) != tuple(self.texture.shape):
            raise ValueError(f"sky texture of shape {tuple(tex.shape)}, expected {tuple(self.texture.shape)} "
                             "(a cube map [6, 3, R, R] of cameras.sky.resolution R)")
        self.texture.data.copy_(tex.to(self.texture.device))


__all__ = ["PoseRefinement", "held_out_pose", "AffineAppearance", "EnvironmentMap", "so3_exp", "pose_errors", "similarity_to", "compose_rigid",
           "rotation_angle_deg", "POSE_MODES", "APPEARANCE_MODES", "SKY_MODELS"]
