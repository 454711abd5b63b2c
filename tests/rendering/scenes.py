"""Random test scenes for the renderer tests (not a test module)."""
import math

import torch


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def cameras(n_cams, width, height, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed + 1000)
    vms, Ks = [], []
    for c in range(n_cams):
        vm = torch.eye(4)
        if c > 0:
            vm[:3, :3] = rot_y(0.25 * c * (-1) ** c) @ torch.linalg.qr(torch.eye(3) + 0.1 * torch.randn(3, 3, generator=g))[0]
            vm[:3, 3] = 0.3 * torch.randn(3, generator=g)
        f = (0.7 + 0.4 * torch.rand(1, generator=g).item()) * width
        Ks.append(torch.tensor([[f, 0.0, width / 2 + 2.3 * c], [0.0, f * 1.05, height / 2 - 1.1 * c], [0.0, 0.0, 1.0]]))
        vms.append(vm)
    return torch.stack(vms).to(dtype), torch.stack(Ks).to(dtype)


def random_scene(n, width, height, n_cams=1, seed=0, dtype=torch.float32, extremes=True):
    """Gaussians mostly in front of the camera, plus (if ``extremes``) some behind it, some far
    off-screen, some very large and some very small."""
    g = torch.Generator().manual_seed(seed)
    z = 1.0 + 6.0 * torch.rand(n, generator=g)
    f = 0.9 * width
    x = (torch.rand(n, generator=g) - 0.5) * width / f * z * 1.3
    y = (torch.rand(n, generator=g) - 0.5) * height / f * z * 1.3
    means = torch.stack([x, y, z], -1)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.6) * z[:, None] / f * 1.2
    if extremes and n >= 20:
        k = max(n // 20, 1)
        means[:k, 2] = -means[:k, 2]                       # behind the camera
        means[k:2 * k, 0] += 40.0                          # off-screen
        scales[2 * k:3 * k] *= 30.0                        # very large
        scales[3 * k:4 * k] *= 1e-3                        # very small
        means[4 * k:5 * k, 2] = 0.005                      # inside the near plane
    quats = torch.randn(n, 4, generator=g)
    opac = 0.02 + 0.96 * torch.rand(n, generator=g)
    if extremes and n >= 20:
        opac[5 * k:6 * k] = 0.9995                         # alpha clamped at 0.999 near the centre
    colors = torch.rand(n, 3, generator=g)
    vm, K = cameras(n_cams, width, height, seed)
    return [t.to(dtype) for t in (means, quats, scales, opac, colors)] + [vm.to(dtype), K.to(dtype)]
