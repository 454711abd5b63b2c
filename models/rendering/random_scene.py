"""Random Gaussians spread over a camera's view: the shared input of the renderer benchmarks, the GPU
check and the compiled backend's tests."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch


def frontal_gaussians(n: int, width: int, height: int, *, n_cams: int = 1, sh_degree: Optional[int] = None,
                      seed: int = 0, depth: Tuple[float, float] = (2.0, 32.0), spread: float = 1.2,
                      log_scale_std: float = 0.5) -> List[torch.Tensor]:
    """``[means, quats, scales, opacities, colors, viewmats, Ks]`` (CPU) for ``rasterization``.

    Centres fill the first camera's frustum (``spread`` times its width/height) at depths in
    ``depth``; footprints of about 1-3 px; colours RGB, or SH coefficients when ``sh_degree`` is set.
    Further cameras turn by 0.05 rad and step 0.2 m sideways each.
    """
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * width
    z = depth[0] + (depth[1] - depth[0]) * torch.rand(n, generator=g)
    x = (torch.rand(n, generator=g) - 0.5) * width / f * z * spread
    y = (torch.rand(n, generator=g) - 0.5) * height / f * z * spread
    means = torch.stack([x, y, z], -1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * log_scale_std) * z[:, None] / f * 1.5
    opac = 0.05 + 0.9 * torch.rand(n, generator=g)
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = 0.3 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g)
    vms, Ks = [], []
    for c in range(n_cams):
        vm = torch.eye(4)
        a = 0.05 * c
        vm[:3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        vm[0, 3] = 0.2 * c
        vms.append(vm)
        Ks.append(torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]]))
    return [means, quats, scales, opac, colors, torch.stack(vms), torch.stack(Ks)]
