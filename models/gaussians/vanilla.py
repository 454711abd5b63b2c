"""VanillaGaussians: 3DGS parameters in gsplat simple_trainer's layout, init and standard PLY I/O."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from models.splat_files import write_gaussians_ply

SH_C0 = 0.28209479177387814
MIN_SCALE = 1e-7  # floor for the initial scale: duplicate points must not give log(0) = -inf

DEFAULT_LRS = {"means": 1.6e-4, "sh0": 2.5e-3, "shN": 2.5e-3 / 20, "opacities": 5e-2,
               "scales": 5e-3, "quats": 1e-3}


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


def sh_degree_at(step: int, interval: int, max_degree: int) -> int:
    """The SH degree rendered at a training step: raised by one every ``interval`` steps (an
    interval below 1 counts as 1), up to the model's ``max_degree``."""
    return min(step // max(1, interval), max_degree)


def knn_mean_distance(xyz: Tensor, k: int = 3, chunk: int = 4096) -> Tensor:
    """Mean Euclidean distance of every point to its k nearest other points (chunked, exact)."""
    n = xyz.shape[0]
    if n <= 1:
        return torch.ones(n, dtype=xyz.dtype, device=xyz.device)
    k = min(k, n - 1)
    try:
        from scipy.spatial import cKDTree
        d, _ = cKDTree(xyz.detach().cpu().double().numpy()).query(
            xyz.detach().cpu().double().numpy(), k=k + 1)
        return torch.as_tensor(d[:, 1:].mean(-1), dtype=xyz.dtype, device=xyz.device)
    except ImportError:  # pragma: no cover - scipy is a project dependency
        out = []
        for i in range(0, n, chunk):
            d = torch.cdist(xyz[i:i + chunk], xyz)
            d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")
            out.append(d.topk(k, largest=False).values.mean(-1))
        return torch.cat(out)


class VanillaGaussians(nn.Module):
    """Gaussians with parameters ``means [N,3]``, ``scales [N,3]`` (log), ``quats [N,4]`` (wxyz,
    unnormalized), ``opacities [N]`` (logit), ``sh0 [N,1,3]``, ``shN [N,K-1,3]`` in ``self.params``.

    ``gsplat.strategy.DefaultStrategy`` replaces entries of ``self.params`` when it densifies, so
    every accessor reads the ParameterDict afresh.
    """

    def __init__(self, params: Mapping[str, Tensor], sh_degree: int = 3):
        super().__init__()
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be in [0, 3], got {sh_degree}")
        K = (sh_degree + 1) ** 2
        n = params["means"].shape[0]
        expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,),
                    "sh0": (n, 1, 3), "shN": (n, K - 1, 3)}
        for key, shape in expected.items():
            if key not in params:
                raise ValueError(f"missing parameter {key!r}")
            if tuple(params[key].shape) != shape:
                raise ValueError(f"parameter {key!r}: expected shape {shape}, got {tuple(params[key].shape)}")
        self.params = nn.ParameterDict({k: nn.Parameter(torch.as_tensor(params[k]).detach().clone().float())
                                        for k in expected})
        self.sh_degree = sh_degree
        self.active_sh_degree = 0

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_points(cls, xyz: Tensor, rgb: Tensor, sh_degree: int = 3, init_opacity: float = 0.1,
                    init_scale: float = 1.0, min_scale: float = MIN_SCALE) -> "VanillaGaussians":
        """Isotropic Gaussians at ``xyz [N,3]`` with colours ``rgb [N,3]`` in [0, 1]; the scale is
        the mean distance to the 3 nearest neighbours (times ``init_scale``), floored at
        ``min_scale`` so coincident points stay finite."""
        xyz = torch.as_tensor(xyz, dtype=torch.float32)
        rgb = torch.as_tensor(rgb, dtype=torch.float32)
        if xyz.dim() != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
            raise ValueError(f"expected xyz [N,3] and rgb [N,3]; got {tuple(xyz.shape)}, {tuple(rgb.shape)}")
        if not torch.isfinite(xyz).all():
            raise ValueError("xyz contains non-finite values")
        if not 0.0 < init_opacity < 1.0:
            raise ValueError(f"init_opacity must be in (0, 1), got {init_opacity}")
        n = xyz.shape[0]
        dist = knn_mean_distance(xyz, 3)
        # a point cloud of duplicates has distance 0 everywhere: fall back to a positive floor
        dist = torch.clamp(torch.nan_to_num(dist, nan=min_scale), min=min_scale) * init_scale
        K = (sh_degree + 1) ** 2
        params = {
            "means": xyz.clone(),
            "scales": torch.log(dist)[:, None].repeat(1, 3),
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            "opacities": torch.full((n,), math.log(init_opacity / (1.0 - init_opacity))),
            "sh0": rgb_to_sh0(rgb.clamp(0.0, 1.0))[:, None, :],
            "shN": torch.zeros(n, K - 1, 3),
        }
        return cls(params, sh_degree)

    # ---------------------------------------------------------------- accessors
    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def get_gaussians(self, split_sh: bool = False, unit_quats: bool = True) -> Dict[str, Tensor]:
        """Activated tensors for ``rasterization``; ``colors`` is the SH [N, K, 3] (pass
        ``sh_degree=self.active_sh_degree``). ``split_sh``: ``sh0`` [N, 1, 3] and ``shN`` [N, K-1, 3]
        (the parameters themselves) instead of their concatenation ``colors``, for ``render_gaussians``,
        which the compiled backend renders without the copy (``rasterization(sh_rest=...)``).
        ``unit_quats=False``: the quaternions as stored, of any norm, for consumers that normalise them
        themselves (every render backend's projection, quat_to_rotmat, the sugar frames): the same
        rotations without four passes over [N, 4] forward and backward."""
        p = self.params
        q = p["quats"]
        out = {
            "means": p["means"],
            "quats": q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12) if unit_quats else q,
            "scales": torch.exp(p["scales"]),
            "opacities": torch.sigmoid(p["opacities"]),
        }
        if split_sh:
            out.update(sh0=p["sh0"], shN=p["shN"])
        else:
            out["colors"] = torch.cat([p["sh0"], p["shN"]], dim=1)
        return out

    # ---------------------------------------------------------------- PLY (standard 3DGS layout)
    def ply_attribute_names(self):
        n_rest = 3 * ((self.sh_degree + 1) ** 2 - 1)
        return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(n_rest)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])

    @torch.no_grad()
    def export_ply(self, path: Union[str, Path]) -> Path:
        """Write the 3DGS PLY with the model's own SH bands (models.splat_files.write_gaussians_ply:
        logit opacity, log scales, wxyz quaternion, f_rest channel-major), readable by load_ply."""
        return write_gaussians_ply(path, self.params, pad_to_degree3=False)

    @classmethod
    def load_ply(cls, path: Union[str, Path], sh_degree: Optional[int] = None) -> "VanillaGaussians":
        """Read a 3DGS PLY; the SH degree is inferred from the number of f_rest_* fields."""
        from plyfile import PlyData
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"PLY file not found: {path}")
        v = PlyData.read(str(path))["vertex"]
        names = [pr.name for pr in v.properties]
        required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
        missing = [r for r in required if r not in names]
        if missing:
            raise ValueError(f"{path}: not a 3DGS PLY, missing vertex properties {missing}")
        n_rest = len([nm for nm in names if nm.startswith("f_rest_")])
        K = n_rest // 3 + 1
        deg = int(round(math.sqrt(K))) - 1
        if (deg + 1) ** 2 != K or 3 * (K - 1) != n_rest:
            raise ValueError(f"{path}: {n_rest} f_rest_* fields is not 3*((d+1)^2-1) for any degree d")
        col = lambda nm: torch.as_tensor(np.asarray(v[nm], dtype=np.float32))
        n = len(v["x"])
        rest = (torch.stack([col(f"f_rest_{i}") for i in range(n_rest)], 1) if n_rest
                else torch.zeros(n, 0))
        params = {
            "means": torch.stack([col("x"), col("y"), col("z")], 1),
            "sh0": torch.stack([col(f"f_dc_{i}") for i in range(3)], 1)[:, None, :],
            "shN": rest.reshape(n, 3, K - 1).transpose(1, 2).contiguous(),
            "opacities": col("opacity"),
            "scales": torch.stack([col(f"scale_{i}") for i in range(3)], 1),
            "quats": torch.stack([col(f"rot_{i}") for i in range(4)], 1),
        }
        model = cls(params, deg)
        if sh_degree is not None and sh_degree != deg:
            raise ValueError(f"{path}: file holds SH degree {deg}, caller expected {sh_degree}")
        model.active_sh_degree = deg
        return model


def create_optimizers(params: Mapping[str, nn.Parameter], lrs: Optional[Mapping[str, float]] = None,
                      scene_scale: float = 1.0) -> Dict[str, torch.optim.Adam]:
    """One Adam per parameter (eps 1e-15), as ``gsplat.strategy.DefaultStrategy`` expects; the
    learning rate of ``means`` is multiplied by ``scene_scale``. ``lrs`` overrides the defaults."""
    rates = dict(DEFAULT_LRS)
    if lrs:
        unknown = set(lrs) - set(params)
        if unknown:
            raise ValueError(f"learning rates given for unknown parameters {sorted(unknown)}")
        rates.update(lrs)
    opts = {}
    for name, p in params.items():
        if name not in rates:
            raise ValueError(f"no learning rate for parameter {name!r}")
        lr = rates[name] * (scene_scale if name == "means" else 1.0)
        # fused on the CPU: one kernel per step instead of ~10 elementwise passes (25k Gaussians on 2 cores:
        # 2.3 ms instead of 7.8 ms for the six parameters); elementwise, so as deterministic as the loop it
        # replaces. CUDA keeps the default implementation (not yet checked on a GPU with gsplat's strategy).
        fused = p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64)
        opts[name] = torch.optim.Adam([{"params": [p], "lr": lr, "name": name}], eps=1e-15, fused=fused)
    return opts
