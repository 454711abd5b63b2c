"""Scores of the staged-quality comparison beyond the mesh metrics: the pixel-footprint τ, the rendered
depth against ground-truth depth, and the staged run's ratios against plain 3DGS."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from models.mesh.run_io import MIN_ALPHA


def pixel_footprint_tau(scene, max_depth: Optional[float] = None) -> Dict[str, float]:
    """τ matched to the pixel footprint at the scored depths: the median, over the training views'
    valid GT-depth pixels (within max_depth), of the width one pixel covers there (z / f_x)."""
    foot = []
    for v in scene.train_views:
        if v.gt_depth is None:
            continue
        z = v.gt_depth.float().cpu().numpy()
        ok = np.isfinite(z) & (z > 0) & ((z <= max_depth) if max_depth is not None else True)
        foot.append(z[ok] / float(v.K[0, 0]))
    if not foot or not sum(len(f) for f in foot):
        return {}
    foot = np.concatenate(foot)
    return {"tau": float(np.median(foot)), "rule": "median pixel footprint z / f_x over the scored GT-depth pixels",
            "footprint_p10": float(np.quantile(foot, 0.1)), "footprint_p90": float(np.quantile(foot, 0.9))}


@torch.no_grad()
def depth_error(run, max_depth: Optional[float] = None) -> Dict[str, float]:
    """Rendered (ED) depth against the ground-truth depth maps of the test views (the training views
    without a test split), where the GT is finite (not sky), within max_depth and static: mean and median
    absolute error (m), mean relative error, and coverage (share of those pixels rendered with alpha >= 0.5)."""
    dataset = run.dataset()  # ground-truth depth
    views = dataset.test_views or dataset.train_views
    errs, rels, covered, total = [], [], 0, 0
    for view in views:
        if view.gt_depth is None:
            continue
        _, alpha, depth = run.render_view(view, render_mode="RGB+ED")
        gt = view.gt_depth.float().cpu().numpy()
        ok = np.isfinite(gt) & (gt > 0)
        if max_depth is not None:
            ok &= gt <= max_depth
        if getattr(view, "dynamic_mask", None) is not None:
            ok &= ~view.dynamic_mask.cpu().numpy().astype(bool)
        seen = ok & (alpha.cpu().numpy() >= MIN_ALPHA)
        d = depth.float().cpu().numpy()
        total += int(ok.sum())
        covered += int(seen.sum())
        errs.append(np.abs(d[seen] - gt[seen]))
        rels.append(np.abs(d[seen] - gt[seen]) / gt[seen])
    if not total:
        return {}
    e, r = np.concatenate(errs), np.concatenate(rels)
    return {"abs_mean": float(e.mean()) if len(e) else float("nan"),
            "abs_median": float(np.median(e)) if len(e) else float("nan"),
            "rel_mean": float(r.mean()) if len(r) else float("nan"), "coverage": covered / total,
            "views": "test" if dataset.test_views else "train"}


def staged_ratios(results: Dict[str, Dict[str, Any]], method: str, tau_pix: Optional[float] = None,
                  run: str = "c_pretrain_entropy_sugar", against: str = "a_pretrain") -> Dict[str, float]:
    """One run against another (default (c) against (a)) for one mesh method: Chamfer ratio, F ratios,
    completeness ratio, normal-consistency difference, PSNR difference (the issue's targets)."""
    a, c = results.get(against), results.get(run)
    if not a or not c:
        return {}
    sa, sc = (a.get("surfaces") or {}).get(method), (c.get("surfaces") or {}).get(method)
    if not sa or not sc:
        return {}
    ratio = lambda x, y: x / y if y else float("inf")  # noqa: E731
    out = {"chamfer": ratio(sc["chamfer"], sa["chamfer"]), "completeness": ratio(sc["completeness"], sa["completeness"]),
           "fscore": ratio(sc["fscore"], sa["fscore"]), "normal_consistency_diff":
           sc["normal_consistency"] - sa["normal_consistency"], "psnr_diff": c["psnr"] - a["psnr"]}
    if tau_pix:
        key = f"{tau_pix:.4g}"
        fa, fc = sa.get("at_tau", {}).get(key, {}).get("fscore"), sc.get("at_tau", {}).get(key, {}).get("fscore")
        if fa is not None and fc is not None:
            out["fscore_pixel"] = ratio(fc, fa)
    return out
