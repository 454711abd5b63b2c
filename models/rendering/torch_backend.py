"""Fast pure-PyTorch alpha compositing of projected 2D Gaussians (any torch device).

Plan (no Python loop over tiles or pixels):
1. without autograd: visible Gaussians (radii > 0) are depth-sorted per camera and binned into
   small tiles (4x4 pixels) covering their opacity-aware bounding box; (Gaussian, tile) pairs whose
   tile rectangle misses the ellipse ``alpha >= 1/255`` are dropped; the rest are sorted by
   (camera, tile, depth) with one unique-key sort;
2. every tile block of n Gaussians x 16 pixels is expanded directly in (pixel, depth) order by
   index arithmetic (no per-pixel sort); candidate alphas are computed and pairs with
   alpha < 1/255 (or a negative exponent) are dropped, as gsplat's rasterizer skips them;
3. still without autograd, a segmented cumulative sum of log(1 - alpha) per pixel (float64) finds
   where the transmittance would fall to <= 1e-4; that Gaussian and all behind it are dropped
   (gsplat stops the pixel there);
4. with autograd, only on the surviving pairs: alpha is recomputed from means2d / conics /
   opacities, the exclusive transmittance is a segmented log-space cumsum in float64, and
   weights * colours are scatter-added into pixels (index_add).
Every pixel with alpha >= 1/255 lies inside the opacity-aware bounding box (its half-width is
``ceil(sqrt(2 ln(255 o)) * sigma)``), so the small bins miss nothing gsplat's 16x16 tiles find.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

T_MIN = 1e-4
TILE_CULL = True  # skip (Gaussian, tile) pairs whose tile misses the ellipse
MAX_ALPHA = 0.999


def _alpha(dx: Tensor, dy: Tensor, conic: Tensor, opac: Tensor) -> Tuple[Tensor, Tensor]:
    sigma = 0.5 * (conic[..., 0] * dx * dx + conic[..., 2] * dy * dy) + conic[..., 1] * dx * dy
    return sigma, torch.clamp(opac * torch.exp(-sigma), max=MAX_ALPHA)


@torch.no_grad()
def find_pairs(means2d: Tensor, conics: Tensor, opacities: Tensor, radii: Tensor, depths: Tensor,
               width: int, height: int, tile_size: int = 4):
    """Contributing (pixel, Gaussian) pairs ordered by (camera, pixel, depth).

    Returns flat Gaussian ids ``c * N + n``, flat pixel ids ``(c * H + y) * W + x``, pixel centres
    ``[K, 2]`` and for every pair the index of the first pair of its pixel.
    """
    device = means2d.device
    C, N = depths.shape
    ts = tile_size
    tw, th = (width + ts - 1) // ts, (height + ts - 1) // ts
    vis = (radii > 0).all(dim=-1).reshape(-1)
    flat = torch.nonzero(vis)[:, 0]
    if flat.numel() == 0:
        e = torch.empty(0, dtype=torch.long, device=device)
        return e, e, means2d.new_empty(0, 2), e
    cam = flat // N
    # (camera, depth) order; stable so that equal depths keep the Gaussian index order like gsplat
    o = torch.argsort(depths.detach().reshape(-1)[flat], stable=True)
    o = o[torch.argsort(cam[o], stable=True)]
    flat, cam = flat[o], cam[o]
    feats = torch.cat([means2d.detach().reshape(-1, 2), conics.detach().reshape(-1, 3),
                       opacities.detach().reshape(-1, 1)], -1).index_select(0, flat)
    r = radii.reshape(-1, 2).index_select(0, flat).to(feats.dtype)
    m = feats[:, :2]
    # pixel bounding box (centres inside mean +- radius), then the tiles it touches
    lo = torch.ceil(m - r - 0.5)
    hi = torch.floor(m - 0.5 + r)
    tx0 = torch.clamp(lo[:, 0], min=0).long() // ts
    ty0 = torch.clamp(lo[:, 1], min=0).long() // ts
    tx1 = torch.clamp(hi[:, 0], max=width - 1).long() // ts
    ty1 = torch.clamp(hi[:, 1], max=height - 1).long() // ts
    ntx = torch.clamp(tx1 - tx0 + 1, min=0)
    nty = torch.clamp(ty1 - ty0 + 1, min=0)
    cnt = ntx * nty
    # (Gaussian, tile) pairs in (camera, depth) order, then stable-sorted by (camera, tile)
    V = flat.numel()
    n_tiles = C * th * tw
    cum = torch.cumsum(cnt, 0)
    n_pairs = int(cum[-1]) if V else 0
    v = torch.repeat_interleave(torch.arange(V, device=device), cnt, output_size=n_pairs)
    loc = torch.arange(n_pairs, device=device) - (cum - cnt).index_select(0, v)
    ntx_v = ntx.index_select(0, v)
    ty = loc // ntx_v
    tile = ((cam.index_select(0, v) * th + ty0.index_select(0, v) + ty) * tw
            + tx0.index_select(0, v) + (loc - ty * ntx_v))
    # drop (Gaussian, tile) pairs whose tile (its pixel-centre rectangle) misses the ellipse
    # 0.5 q(d) <= ln(255 o): minimum of the quadratic form over the rectangle's edges
    fv = feats.index_select(0, v)
    tyy = (tile // tw) % th
    txx = tile % tw
    rx0 = txx.to(fv.dtype) * ts + 0.5 - fv[:, 0]
    rx1 = rx0 + (ts - 1)
    ry0 = tyy.to(fv.dtype) * ts + 0.5 - fv[:, 1]
    ry1 = ry0 + (ts - 1)
    ca, cb, cc = fv[:, 2], fv[:, 3], fv[:, 4]
    inside = (rx0 <= 0) & (rx1 >= 0) & (ry0 <= 0) & (ry1 >= 0)
    qmin = torch.full_like(rx0, float("inf"))
    for dx in (rx0, rx1):   # vertical edges: best dy = -b dx / c clamped to the edge
        dy = torch.minimum(torch.maximum(-cb * dx / cc, ry0), ry1)
        qmin = torch.minimum(qmin, ca * dx * dx + 2 * cb * dx * dy + cc * dy * dy)
    for dy in (ry0, ry1):   # horizontal edges
        dx = torch.minimum(torch.maximum(-cb * dy / ca, rx0), rx1)
        qmin = torch.minimum(qmin, ca * dx * dx + 2 * cb * dx * dy + cc * dy * dy)
    lim = 2.0 * torch.log(torch.clamp(fv[:, 5] / ALPHA_THRESHOLD, min=1.0))
    hit = torch.nonzero(inside | (qmin <= lim * (1 + 1e-4) + 1e-4) | (not TILE_CULL))[:, 0]
    v, tile = v.index_select(0, hit), tile.index_select(0, hit)
    del fv, tyy, txx, rx0, rx1, ry0, ry1, ca, cb, cc, inside, qmin, lim, hit
    # order by (camera, tile, depth): the key tile * V + v is unique, so an unstable sort gives
    # the stable order (and int32 keys sort much faster on CPU)
    key = tile * V + v
    if n_tiles * V < 2 ** 31:
        key = key.to(torch.int32)
    key = torch.sort(key).values.long()
    tile, v = key // V, key % V
    # expand every tile block [n_t Gaussians x ts^2 pixels] directly in (pixel, depth) order:
    # runs of n_t pairs, one run per (tile, pixel slot); int32 arithmetic, no division
    n_t = torch.bincount(tile, minlength=n_tiles)
    o_t = (torch.cumsum(n_t, 0) - n_t)
    # per (tile, pixel slot) tables; slots outside the image get empty runs
    tile_ids = torch.arange(n_tiles, device=device)
    slots = torch.arange(ts * ts, device=device)
    run_x = ((tile_ids % tw) * ts)[:, None] + slots[None, :] % ts
    run_y = ((tile_ids // tw % th) * ts)[:, None] + slots[None, :] // ts
    run_in = ((run_x < width) & (run_y < height)).reshape(-1)
    run_pix = (((tile_ids // (th * tw))[:, None] * height + run_y) * width + run_x).reshape(-1)
    run_len = torch.where(run_in, n_t.repeat_interleave(ts * ts), torch.zeros_like(run_pix))
    run_start_e = o_t.repeat_interleave(ts * ts)   # first (Gaussian, tile) pair of the tile block
    n_cand = int(run_len.sum())
    run_key = torch.arange(n_tiles * ts * ts, device=device)   # tile * ts^2 + slot, ascending
    run_of = torch.repeat_interleave(run_key, run_len, output_size=n_cand)
    run_off = torch.cumsum(run_len, 0) - run_len
    e = ((run_start_e - run_off).index_select(0, run_of) + torch.arange(n_cand, device=device))
    g = v.index_select(0, e)
    del e, run_len, run_start_e, run_off
    n_keys = n_tiles * ts * ts
    run_c = torch.stack([run_x.reshape(-1), run_y.reshape(-1)], -1).to(feats.dtype) + 0.5
    cxy = run_c.index_select(0, run_of)
    f = feats.index_select(0, g)
    sigma, alpha = _alpha(f[:, 0] - cxy[:, 0], f[:, 1] - cxy[:, 1], f[:, 2:5], f[:, 5])
    keep = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    del f, sigma
    idx = torch.nonzero(keep)[:, 0]
    g, alpha = g.index_select(0, idx), alpha.index_select(0, idx)
    tkey = run_of.index_select(0, idx)      # ascending: pixel key in tile order
    pix = run_pix.index_select(0, tkey)
    centres = cxy.index_select(0, idx)
    # transmittance cut-off per pixel (float64 log-space): keep while T * (1 - alpha) > 1e-4
    la = torch.log1p(-alpha.double())
    cs = torch.cumsum(la, 0)
    start = _segment_starts(tkey, n_keys)
    incl = cs - (cs - la).index_select(0, start)
    sel = torch.nonzero(incl > math.log(T_MIN))[:, 0]
    return (flat.index_select(0, g.index_select(0, sel)), pix.index_select(0, sel),
            centres.index_select(0, sel), _segment_starts(tkey.index_select(0, sel), n_keys))


def _segment_starts(keys: Tensor, n_keys: int) -> Tensor:
    """For ascending pair keys (one key per pixel), the index of the first pair of each key."""
    counts = torch.bincount(keys, minlength=n_keys)
    return (torch.cumsum(counts, 0) - counts).index_select(0, keys)


def rasterize_to_pixels_torch(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor,
                              radii: Tensor, depths: Tensor, width: int, height: int,
                              backgrounds: Optional[Tensor] = None, tile_size: int = 4):
    """Composite [C,N,*] projected Gaussians to ``(colors [C,H,W,D], alphas [C,H,W,1], n_pairs)``."""
    C, N = depths.shape
    D = colors.shape[-1]
    gid, pix, centres, start = find_pairs(means2d, conics, opacities, radii, depths, width, height,
                                          tile_size)
    P = C * height * width
    # one gather of everything a pair needs (its backward is a single index_add)
    feats = torch.cat([means2d.reshape(C * N, 2), conics.reshape(C * N, 3),
                       opacities.reshape(C * N, 1), colors.reshape(C * N, D)], -1)
    f = feats.index_select(0, gid)
    # split/squeeze (not slicing): their backward is a concatenation, not zero-filled copies
    mx, my, ca, cb, cc, op, col = f.split([1, 1, 1, 1, 1, 1, D], dim=1)
    cx, cy = centres.unbind(-1)
    dx, dy = mx.squeeze(1) - cx, my.squeeze(1) - cy
    sigma = 0.5 * (ca.squeeze(1) * dx * dx + cc.squeeze(1) * dy * dy) + cb.squeeze(1) * dx * dy
    alpha = torch.clamp(op.squeeze(1) * torch.exp(-sigma), max=MAX_ALPHA)
    la = torch.log1p(-alpha.double())
    cs_ex = torch.cumsum(la, 0) - la                    # exclusive cumsum over all pairs
    T = torch.exp(cs_ex - cs_ex.index_select(0, start)).to(alpha.dtype)  # exclusive, per pixel
    w = (alpha * T)[:, None]
    contrib = torch.cat([w * col, w], -1)
    out = torch.zeros(P, D + 1, dtype=contrib.dtype, device=contrib.device).index_add(0, pix, contrib)
    out_c = out[:, :D].reshape(C, height, width, D)
    out_a = out[:, D:].reshape(C, height, width, 1)
    if backgrounds is not None:
        out_c = out_c + backgrounds[:, None, None, :] * (1.0 - out_a)
    return out_c, out_a, int(pix.numel())
