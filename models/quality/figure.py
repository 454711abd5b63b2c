"""The staged-quality comparison's figure: per run, a test view's ground truth, render, depth, normals
(of the depth, and rendered) and mesh depths; below, the loss curves with the stage boundaries."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np

from models.cameras import pixel_rays
from models.mesh.run_io import MIN_ALPHA, load_run


def read_loss_curve(run_dir: Path, tag: str = "train/loss") -> tuple[np.ndarray, np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return np.zeros(0), np.zeros(0)
    events = acc.Scalars(tag)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def stage_boundaries(run_dir: Path) -> list:
    """(step, stage name) of each stage start, from the run's trace."""
    from models.trainers.trace import read_trace

    out = []
    for rec in read_trace(run_dir / "trace"):
        if rec.get("event") == "transition":
            out.append((int(rec["step"]), rec["to"]))
    return out


def mesh_depth(mesh, K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> np.ndarray:
    """Camera-z depth of a mesh seen from a camera (open3d ray casting; 0 where no hit)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    d_world = pixel_rays(K, width, height) @ c2w[:3, :3].T
    rays = np.concatenate([np.broadcast_to(c2w[:3, 3], d_world.shape), d_world], -1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()  # along the unnormalised ray: t = camera z
    return np.where(np.isfinite(t), t, 0.0)


def quality_figure(results: Dict[str, Dict[str, Any]], path: Path) -> Path:
    """Rows: the runs (test view: ground truth, render, ED depth, normals from that depth, rendered
    normals, GT depth, depth of each extracted mesh); last row: loss curves with the stage boundaries."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from models.depth_normals import normals_from_depth
    from models.mesh.metrics import load_mesh

    names = list(results)
    methods = sorted({m for r in results.values() for m in (r.get("meshes") or {})}) or ["levelset"]
    fig = plt.figure(figsize=(3.3 * (6 + len(methods)), 2.6 * len(names) + 3.2))
    grid = fig.add_gridspec(len(names) + 1, 6 + len(methods))
    cols = ["ground truth", "render", "ED depth", "normals (depth gradient)", "rendered normals", "GT depth"] + [
        f"{m} mesh depth" for m in methods]
    for r, name in enumerate(names):
        res = results[name]
        run = load_run(res["run_dir"])
        dataset = run.dataset()  # the figure shows ground truth: images and GT depth
        view = (dataset.test_views or dataset.train_views)[0]
        rgb, alpha, depth = run.render_view(view)
        K = view.K.double().cpu().numpy()
        d = np.where(alpha.cpu().numpy() >= MIN_ALPHA, depth.cpu().numpy(), 0.0)
        vmax = float(np.quantile(d[d > 0], 0.98)) if (d > 0).any() else 1.0
        meshes = res.get("meshes") or ({"levelset": res["mesh"]} if res.get("mesh") else {})
        mds = [mesh_depth(load_mesh(meshes[m]), K, view.camera_to_world.double().cpu().numpy(), view.width,
                          view.height) if meshes.get(m) else np.zeros_like(d) for m in methods]
        gt = view.gt_depth.cpu().numpy() if getattr(view, "gt_depth", None) is not None else np.zeros_like(d)
        gt = np.where(np.isfinite(gt), gt, 0.0)
        normals = (normals_from_depth(d, K, d > 0, towards_camera=True) + 1) / 2 * (d > 0)[..., None]
        with torch.no_grad():
            surface = run.scene.render(view.camera, view.frame_idx, surface=True).surface
        shown = (surface.valid & (alpha >= MIN_ALPHA)).cpu().numpy()
        rendered = (surface.normals.detach().cpu().numpy() + 1) / 2 * shown[..., None]
        tiles = [view.image.cpu().numpy(), rgb.cpu().numpy(), d, normals, rendered, gt, *mds]
        for c, tile in enumerate(tiles):
            ax = fig.add_subplot(grid[r, c])
            if tile.ndim == 2:
                ax.imshow(np.ma.masked_where(tile <= 0, tile), cmap="turbo", vmin=0, vmax=vmax)
            else:
                ax.imshow(np.clip(tile, 0, 1))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(res.get("label", name), fontsize=9)
    ax = fig.add_subplot(grid[len(names), :])
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for i, name in enumerate(names):
        steps, loss = read_loss_curve(Path(results[name]["run_dir"]))
        ax.plot(steps, loss, color=colours[i % 4], label=name, lw=1)
        for step, stage in stage_boundaries(Path(results[name]["run_dir"])):
            if step > 0:
                ax.axvline(step, color=colours[i % 4], ls="--", lw=0.8)
                ax.text(step, ax.get_ylim()[1], f" {stage}", color=colours[i % 4], fontsize=7, va="top")
    ax.set_xlabel("step"), ax.set_ylabel("train loss"), ax.set_yscale("log"), ax.legend(fontsize=8)
    ax.set_title("training loss (dashed: stage boundaries)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
