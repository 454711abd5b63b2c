"""The compiled CPU backend: determinism, the `auto` choice, the fallback, kernel gradients, the build."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from models.rendering import cpp_backend, rasterization
from models.rendering.random_scene import frontal_gaussians
from tests.rendering.scenes import random_scene

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _render_and_grads(inputs, width, height, threads, camera_grads=True, **kw):
    torch.set_num_threads(threads)
    # cameras that need gradients take the PyTorch projection; without, the compiled one
    args = [t.clone().requires_grad_(i < 5 or camera_grads) for i, t in enumerate(inputs)]
    c, a, meta = rasterization(*args, width, height, backend="cpp", **kw)
    meta["means2d"].retain_grad()
    g = torch.Generator().manual_seed(1)
    ((c * torch.randn(c.shape, generator=g)).sum() + (a * torch.randn(a.shape, generator=g)).sum()).backward()
    return [c, a, meta["means2d"].grad] + [x.grad for x in args[:5]]


@pytest.mark.parametrize("camera_grads", [False, True], ids=["compiled_projection", "torch_projection"])
def test_bitwise_deterministic_across_calls_and_thread_counts(camera_grads):
    """Renders and the Gaussians' gradients are the same bits at 1 and 2 threads, in whatever
    numerics mode the suite runs (the renderer calls no MKL or oneDNN: models/cameras.matmul3)."""
    assert cpp_backend.available(), cpp_backend._error
    # enough Gaussians and tiles that two threads really split the work
    inputs = frontal_gaussians(4000, 96, 64, n_cams=2, sh_degree=2, seed=3)
    runs = [_render_and_grads(inputs, 96, 64, t, camera_grads=camera_grads, sh_degree=2, render_mode="RGB+ED")
            for t in (2, 2, 1)]
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)


def test_auto_picks_cpp_for_cpu_tensors_and_means2d_matches_torch():
    inputs = random_scene(500, 64, 48, 2, seed=6)
    grads = {}
    for be in ("auto", "cpp", "torch"):
        args = [t.clone().requires_grad_(True) for t in inputs]
        c, a, meta = rasterization(*args, 64, 48, backend=be)
        meta["means2d"].retain_grad()
        (c.sum() + a.sum()).backward()
        grads[be] = (c, meta["means2d"].grad, meta["n_pairs"])
    assert torch.equal(grads["auto"][0], grads["cpp"][0])  # same kernels
    assert grads["cpp"][2] == grads["torch"][2]             # same contributing pairs
    # the densification signal (DefaultStrategy reads means2d.grad) agrees with the torch backend
    g_c, g_t = grads["cpp"][1], grads["torch"][1]
    assert (g_c - g_t).abs().max() <= 1e-4 * g_t.abs().max()


def test_kernel_gradcheck_float64():
    """The compositing kernels alone, on projected inputs (means2d, conics, colors, opacities)."""
    g = torch.Generator().manual_seed(2)
    C, N, W, H = 2, 12, 12, 10
    means2d = torch.rand(C, N, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H], dtype=torch.float64)
    L = torch.randn(C, N, 2, 2, generator=g, dtype=torch.float64) * 0.3 + 0.6 * torch.eye(2, dtype=torch.float64)
    cov = L @ L.transpose(-1, -2) + 0.3 * torch.eye(2, dtype=torch.float64)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 1]], -1)
    opac = 0.3 + 0.6 * torch.rand(C, N, generator=g, dtype=torch.float64)
    colors = torch.rand(C, N, 4, generator=g, dtype=torch.float64)
    radii = torch.full((C, N, 2), 5, dtype=torch.int32)
    depths = torch.rand(C, N, generator=g, dtype=torch.float64)
    bg = torch.rand(C, 4, generator=g, dtype=torch.float64)

    def f(m, con, col, op, b):
        c, a, _ = cpp_backend.rasterize_to_pixels_cpp(m, con, col, op, radii, depths, W, H, b, tile_size=4)
        return c, a

    args = [t.clone().requires_grad_(True) for t in (means2d, conics, colors, opac, bg)]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_missing_compiler_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(cpp_backend, "_ext", None)
    monkeypatch.setattr(cpp_backend, "_error", None)
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    inputs = random_scene(50, 24, 16, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c1, _, _ = rasterization(*inputs, 24, 16)
        c2, _, _ = rasterization(*inputs, 24, 16)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "no-such-compiler-xyz" in msgs[0] and "PyTorch backend" in msgs[0]
    ref, _, _ = rasterization(*inputs, 24, 16, backend="torch")
    assert torch.equal(c1, ref) and torch.equal(c2, ref)
    with pytest.raises(RuntimeError, match="unavailable"):
        rasterization(*inputs, 24, 16, backend="cpp")


def test_unknown_backend_is_refused():
    inputs = random_scene(10, 16, 12)
    with pytest.raises(ValueError, match="backend must be one of"):
        rasterization(*inputs, 16, 12, backend="cuda")


@pytest.mark.slow
def test_builds_from_an_empty_extensions_dir(tmp_path):
    """What CI does on a fresh clone: compile into an empty TORCH_EXTENSIONS_DIR, log one line, render."""
    code = ("import logging, torch; logging.basicConfig(level=logging.INFO, format='%(message)s');"
            "from models.rendering import rasterization;"
            "from tests.rendering.scenes import random_scene;"
            "c, a, m = rasterization(*random_scene(100, 32, 24), 32, 24, backend='cpp'); print('pairs', m['n_pairs'])")
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("compiling the C++ CPU rasterizer") == 1, r.stderr
    assert "pairs" in r.stdout
    assert any(p.suffix == ".so" for p in tmp_path.rglob("*.so"))
