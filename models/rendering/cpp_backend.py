"""The compiled CPU backend: gsplat's tile pipeline as deterministic C++ kernels (``csrc/``).

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` (as gsplat compiles
its CUDA kernels) into ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), in a
folder named after a hash of the sources, the torch version and the flags, so builds of other
versions never collide and a finished build is reused by every later process. One log line is
written while it compiles. Where it cannot be built (no C++ compiler, no ninja, no Python headers,
a failing build), :func:`load_extension` returns ``None`` after ONE warning naming what is
missing, and ``rasterization(backend="auto")`` falls back to the PyTorch backend.

The kernels do the EWA projection and the SH colours (forward and backward: in PyTorch they were
the largest part of a training step at 25k Gaussians, ~45 ms of ~60), tile intersection, forward
compositing and its backward, and the per-Gaussian channels of the surface maps (``surface.py``).
The projection and the SH colours also give the cameras' gradients (``viewmats``, through the
projection and the camera centres) when the cameras require them (pose refinement); only the
intrinsics ``Ks`` get none. Outputs and gradients are bitwise the same on every call and for any
thread count: see the comments in ``csrc/projection_ewa.cpp`` and ``csrc/rasterize_to_pixels_bwd.cpp``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sysconfig
import threading
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("ext.cpp", "projection_ewa.cpp", "spherical_harmonics.cpp", "ssim.cpp", "envmap.cpp", "colour_affine.cpp",
           "sugar_frames.cpp", "sugar_density.cpp", "sugar_normal.cpp", "surface_channels.cpp", "intersect_tile.cpp",
           "rasterize_to_pixels_fwd.cpp", "rasterize_to_pixels_bwd.cpp")
HEADERS = ("kernels.h",)
# portable flags: no -march, so a cached build also runs on an older CPU sharing the cache folder
CFLAGS = ["-O3", "-fopenmp", "-fno-trapping-math"]  # no FP traps: lets GCC vectorize the masks
LDFLAGS = ["-fopenmp"]
TILE = 8  # pixel tile of the compiled backend (gsplat uses 16 on a GPU; 8 wastes fewer tests on a CPU)

_lock = threading.Lock()
_ext = None
_error: Optional[str] = None


def extension_name() -> str:
    h = hashlib.sha256()
    for f in SOURCES + HEADERS:
        h.update((CSRC / f).read_bytes())
    h.update(" ".join([torch.__version__, *CFLAGS, *LDFLAGS]).encode())
    return f"omnire_sugar_cpu_rasterizer_{h.hexdigest()[:12]}"


def build_root() -> Path:
    from torch.utils.cpp_extension import get_default_build_root
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def _missing_tools() -> Optional[str]:
    from torch.utils.cpp_extension import is_ninja_available
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ('{cxx}' not on PATH; on Debian: apt-get install g++)"
    if not is_ninja_available():
        return "ninja is not installed (pip install ninja==1.13.2)"
    include = sysconfig.get_paths().get("include", "")
    if not (Path(include) / "Python.h").exists():
        return f"the Python headers are missing ({include}/Python.h; on Debian: apt-get install python3-dev)"
    return None


def load_extension():
    """The compiled module, building it on first use; ``None`` (after one warning) if it cannot be built."""
    global _ext, _error
    if _ext is not None or _error is not None:
        return _ext
    with _lock:
        if _ext is not None or _error is not None:
            return _ext
        _error = _missing_tools()
        if _error is None:
            try:
                _ext = _build()
            except Exception as e:  # a failed build must not stop training: fall back to PyTorch
                lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
                _error = f"its build failed: {lines[-1] if lines else type(e).__name__}"
        if _ext is None:
            warnings.warn(f"the compiled CPU rasterizer is unavailable: {_error}; "
                          "rendering on the CPU uses the (slower) PyTorch backend", RuntimeWarning, stacklevel=3)
    return _ext


def _build():
    from torch.utils.cpp_extension import load
    name = extension_name()
    build_dir = build_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    fresh = not (build_dir / f"{name}.so").exists()
    t0 = time.perf_counter()
    if fresh:
        logger.info("compiling the C++ CPU rasterizer (first use; cached in %s)", build_dir)
    ext = load(name=name, sources=[str(CSRC / f) for f in SOURCES], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
               build_directory=str(build_dir), verbose=False)
    if fresh:
        logger.debug("C++ CPU rasterizer built in %.1f s", time.perf_counter() - t0)
    return ext


def available() -> bool:
    return load_extension() is not None


class _ProjectEWA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, near, far, eps2d, radius_clip,
                antialiased):
        radii, means2d, depths, conics, opac = load_extension().project_fwd(
            means, quats, scales, opacities, viewmats, Ks, width, height, near, far, eps2d, radius_clip, antialiased)
        ctx.save_for_backward(means, quats, scales, opacities, viewmats, Ks)
        ctx.args = (width, height, near, far, eps2d, antialiased)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, opac

    @staticmethod
    def backward(ctx, _v_radii, v_means2d, v_depths, v_conics, v_opac):
        means, quats, scales, opacities, viewmats, Ks = ctx.saved_tensors
        width, height, near, far, eps2d, antialiased = ctx.args
        viewmat_grad = ctx.needs_input_grad[4]  # the cameras' gradient only when asked: none costs nothing
        g = load_extension().project_bwd(means, quats, scales, opacities, viewmats, Ks, width, height, near, far,
                                         eps2d, antialiased, v_means2d, v_depths, v_conics, v_opac, viewmat_grad)
        v_viewmats = g[4] if viewmat_grad else None
        return (*g[:4], v_viewmats, None, None, None, None, None, None, None, None)


class _SHColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, means, coeffs, rest, campos, radii):
        ctx.save_for_backward(means, coeffs, rest, campos, radii)
        ctx.degree = degree
        return load_extension().sh_fwd(degree, means, coeffs, campos, radii, rest)

    @staticmethod
    def backward(ctx, v_colors):
        means, coeffs, rest, campos, radii = ctx.saved_tensors
        campos_grad = ctx.needs_input_grad[4]
        g = load_extension().sh_bwd(ctx.degree, means, coeffs, campos, v_colors, rest, radii, campos_grad)
        v_rest = g[2] if rest is not None else None
        v_campos = g[-1] if campos_grad else None
        return None, g[0], g[1], v_rest, v_campos, None


def can_project(means: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor) -> bool:
    """Whether the compiled projection applies: CPU float tensors, per-Gaussian (not per-camera)
    opacities, and intrinsics that need no gradient. Cameras whose ``viewmats`` require gradients
    (pose refinement) take it too: its backward gives ``viewmats`` theirs. ``Ks`` that require
    gradients fall back to the PyTorch projection (the kernels give none for the intrinsics)."""
    return (means.device.type == "cpu" and means.dtype in (torch.float32, torch.float64) and opacities.dim() == 1
            and not Ks.requires_grad and load_extension() is not None)


def project_gaussians_cpp(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor,
                          Ks: Tensor, width: int, height: int, near_plane: float = 0.01, far_plane: float = 1e10,
                          eps2d: float = 0.3, radius_clip: float = 0.0, antialiased: bool = False):
    """``projection.project_gaussians`` in C++ (same conventions and outputs, a ``Projection``).

    Differentiable with respect to the means, quaternions, scales, opacities and ``viewmats``
    ([C,4,4]; gsplat's convention: only the top 3x4 rows get non-zero gradients), computed only
    when ``viewmats`` requires grad; ``Ks`` get no gradient (detached)."""
    from .projection import Projection
    dt = means.dtype
    radii, means2d, depths, conics, opac = _ProjectEWA.apply(
        means.contiguous(), quats.to(dt).contiguous(), scales.to(dt).contiguous(), opacities.to(dt).contiguous(),
        viewmats.to(dt).contiguous(), Ks.detach().to(dt).contiguous(), int(width), int(height),
        float(near_plane), float(far_plane), float(eps2d), float(radius_clip), bool(antialiased))
    return Projection(radii, means2d, depths, conics, opac)


def sh_colors_cpp(degree: int, means: Tensor, coeffs: Tensor, campos: Tensor,
                  radii: Optional[Tensor] = None, rest: Optional[Tensor] = None) -> Tensor:
    """``clamp_min(eval_sh(degree, means - campos, coeffs) + 0.5, 0)`` for [N, K, 3] coefficients and
    [C, 3] camera centres -> [C, N, 3], in C++. ``rest`` [N, K', 3]: the coefficients come in two parts,
    ``coeffs`` the first (3DGS's sh0) and ``rest`` the others (shN), read in place instead of concatenated.
    With the projection's ``radii`` [C, N, 2], a Gaussian culled in a camera (radius 0) gets colour 0 there
    without being evaluated, and adds nothing to any gradient there (a constant 0): the rasterizer never
    reads it, and in a large scene most Gaussians are outside any one view.

    Differentiable with respect to the means, the coefficients and, when it requires grad, ``campos``
    (``-sum`` over the Gaussians of the gradient of ``means - campos``, through the normalisation the
    kernel applies to it)."""
    dt = means.dtype
    if radii is not None:
        radii = radii.to(torch.int32).contiguous()
    if rest is not None:
        rest = rest.to(dt).contiguous()
    return _SHColors.apply(int(degree), means.contiguous(), coeffs.to(dt).contiguous(), rest,
                           campos.to(dt).contiguous(), radii)


class _EnvMap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, texture, rot, K, width, height):
        ctx.save_for_backward(texture, rot, K)
        return load_extension().envmap_fwd(texture, rot, K, width, height)

    @staticmethod
    def backward(ctx, v_out):
        texture, rot, K = ctx.saved_tensors
        return load_extension().envmap_bwd(texture, rot, K, v_out.contiguous()), None, None, None, None


def envmap_cpp(texture: Tensor, rot: Tensor, K: Tensor, width: int, height: int) -> Tensor:
    """The sky's colours [height, width, 3] through the pixel centres of a camera (``rot``: its camera-to-world
    rotation), bilinear in the cube map's colours [6, 3, R, R] (models.camera_models.EnvironmentMap's lookup),
    in C++; differentiable with respect to the texture only."""
    dt = texture.dtype
    return _EnvMap.apply(texture.contiguous(), rot.detach().to(dt).contiguous(), K.detach().to(dt).contiguous(),
                         int(width), int(height))


class _ColourAffine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rgb, M):
        ctx.save_for_backward(rgb, M)
        return load_extension().colour_affine_fwd(rgb, M)

    @staticmethod
    def backward(ctx, v_out):
        rgb, M = ctx.saved_tensors
        v_rgb, v_M = load_extension().colour_affine_bwd(rgb, M, v_out.contiguous())
        return v_rgb, v_M


def colour_affine_cpp(rgb: Tensor, M: Tensor) -> Tensor:
    """``M[:, :3] rgb + M[:, 3]`` per pixel of an [H, W, 3] image (a camera's appearance), in C++;
    differentiable with respect to both."""
    return _ColourAffine.apply(rgb.contiguous(), M.to(rgb.dtype).contiguous())


class _SSIMHWC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, window, c1, c2):
        value, maps = load_extension().ssim_fwd(x, y, window, c1, c2)
        ctx.save_for_backward(x, y, window, maps)
        ctx.c = (c1, c2)
        return value

    @staticmethod
    def backward(ctx, v_value):
        x, y, window, maps = ctx.saved_tensors
        return load_extension().ssim_bwd(x, y, window, *ctx.c, maps, v_value.detach()), None, None, None, None


def ssim_hwc_cpp(x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float) -> Tensor:
    """Mean SSIM of ``x`` against ``y``, both [H, W, C] (models.ssim.ssim's maths), in C++; differentiable
    with respect to ``x`` only."""
    dt = x.dtype
    return _SSIMHWC.apply(x.contiguous(), y.detach().to(dt).contiguous(), window.to(dt).contiguous(), float(c1),
                          float(c2))


class _SugarFrames(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities):
        rotmats, table, normals = load_extension().sugar_frames_fwd(means, quats, scales, opacities)
        ctx.save_for_backward(quats, scales)
        return rotmats, table, normals

    @staticmethod
    def backward(ctx, v_rotmats, v_table, v_normals):
        quats, scales = ctx.saved_tensors
        return tuple(load_extension().sugar_frames_bwd(quats, scales, v_rotmats, v_table, v_normals))


def sugar_frames_cpp(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor):
    """(rotmats [N, 3, 3], neighbour table [N, 14], normals [N, 3]) of the Gaussians in one pass, in C++
    (models.sugar.geometry.gaussian_frames); differentiable with respect to all four inputs."""
    dt = means.dtype
    return _SugarFrames.apply(means.contiguous(), quats.to(dt).contiguous(), scales.to(dt).contiguous(),
                              opacities.reshape(-1).to(dt).contiguous())


class _SugarDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, table, nbr):
        terms, beta = load_extension().sugar_density_fwd(points, table, nbr)
        ctx.save_for_backward(points, table, nbr)
        return terms, beta

    @staticmethod
    def backward(ctx, v_terms, v_beta):
        points, table, nbr = ctx.saved_tensors
        if v_terms is None:
            v_terms = torch.zeros(nbr.shape, dtype=points.dtype)
        v_points, v_table = load_extension().sugar_density_bwd(points, table, nbr, v_terms, v_beta)
        return v_points, v_table, None


def sugar_density_cpp(points: Tensor, table: Tensor, nbr: Tensor):
    """(terms [M, K], β [M]) of SuGaR's density at ``points`` from the ``neighbour_table`` rows of
    ``nbr`` [M, K] (models.sugar.geometry.neighbour_density), gather included, in C++."""
    dt = points.dtype
    return _SugarDensity.apply(points.contiguous(), table.to(dt).contiguous(), nbr.to(torch.int64).contiguous())


class _SugarNormal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, table, normals, nbr):
        residual, valid, coef, r = load_extension().sugar_normal_fwd(points, table, normals, nbr)
        ctx.save_for_backward(nbr, coef, r)
        ctx.n = normals.shape[0]
        ctx.mark_non_differentiable(valid)
        return residual, valid

    @staticmethod
    def backward(ctx, v_residual, _v_valid):
        nbr, coef, r = ctx.saved_tensors
        return None, None, load_extension().sugar_normal_bwd(nbr, coef, r, v_residual, ctx.n), None


def sugar_normal_cpp(points: Tensor, table: Tensor, normals: Tensor, nbr: Tensor):
    """(residual [M], valid [M] bool) of SuGaR's normal regularizer (models.sugar.regularizers.sugar_normal_loss)
    at ``points`` from the ``neighbour_table`` rows and unit ``normals`` of ``nbr`` [M, K] (column 0: each
    sample's own Gaussian), in C++; differentiable with respect to the normals only."""
    dt = points.dtype
    return _SugarNormal.apply(points.detach().contiguous(), table.detach().to(dt).contiguous(),
                              normals.to(dt).contiguous(), nbr.to(torch.int64).contiguous())


class _SurfaceChannels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmat):
        ctx.save_for_backward(means, quats, scales, viewmat)
        return load_extension().surface_fwd(means, quats, scales, viewmat)

    @staticmethod
    def backward(ctx, v_out):
        means, quats, scales, viewmat = ctx.saved_tensors
        v_means, v_quats = load_extension().surface_bwd(means, quats, scales, viewmat, v_out)
        return v_means, v_quats, None, None


def surface_channels_cpp(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor) -> Tensor:
    """``models.rendering.surface.surface_channels`` in C++: [N, 4] camera-frame normals turned towards
    the camera and plane distances, differentiable with respect to the means and quaternions."""
    dt = means.dtype
    return _SurfaceChannels.apply(means.contiguous(), quats.to(dt).contiguous(), scales.detach().to(dt).contiguous(),
                                  viewmat.detach().to(dt).contiguous())


class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, offsets, flat_ids, width, height, tile):
        ext = load_extension()
        out_c, out_a, last, n_pairs = ext.rasterize_fwd(means2d, conics, colors, opacities, offsets, flat_ids,
                                                        width, height, tile)
        ctx.save_for_backward(means2d, conics, colors, opacities, offsets, flat_ids, last)
        ctx.size = (width, height, tile)
        ctx.mark_non_differentiable(n_pairs)
        return out_c, out_a, n_pairs

    @staticmethod
    def backward(ctx, v_colors, v_alphas, _v_pairs):
        means2d, conics, colors, opacities, offsets, flat_ids, last = ctx.saved_tensors
        width, height, tile = ctx.size
        if v_colors is None:
            v_colors = torch.zeros(last.shape + (colors.shape[-1],), dtype=colors.dtype)
        if v_alphas is None:
            v_alphas = torch.zeros(last.shape + (1,), dtype=colors.dtype)
        v_m, v_con, v_col, v_op = load_extension().rasterize_bwd(
            means2d, conics, colors, opacities, offsets, flat_ids, width, height, tile, last, v_colors, v_alphas)
        return v_m, v_con, v_col, v_op, None, None, None, None, None


def rasterize_to_pixels_cpp(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, radii: Tensor,
                            depths: Tensor, width: int, height: int, backgrounds: Optional[Tensor] = None,
                            tile_size: int = TILE):
    """Composite [C,N,*] projected Gaussians to ``(colors [C,H,W,D], alphas [C,H,W,1], n_pairs)``,
    the interface of ``torch_backend.rasterize_to_pixels_torch``."""
    ext = load_extension()
    if ext is None:
        raise RuntimeError(f"the compiled CPU rasterizer is unavailable: {_error}")
    if means2d.device.type != "cpu":
        raise ValueError(f"backend='cpp' needs CPU tensors, got {means2d.device}")
    dtype = means2d.dtype
    C, N = depths.shape
    m2 = means2d.contiguous()
    con = conics.to(dtype).contiguous()
    op = opacities.to(dtype).reshape(C, N).contiguous()
    col = colors.to(dtype).contiguous()
    with torch.no_grad():
        offsets, flat_ids = ext.intersect_tiles(m2.detach(), radii.to(torch.int32).contiguous(),
                                                depths.detach().to(dtype).contiguous(), con.detach(), op.detach(),
                                                width, height, tile_size)
    out_c, out_a, n_pairs = _RasterizeToPixels.apply(m2, con, col, op, offsets, flat_ids, width, height, tile_size)
    if backgrounds is not None:
        out_c = out_c + backgrounds[:, None, None, :] * (1.0 - out_a)
    return out_c, out_a, int(n_pairs)
