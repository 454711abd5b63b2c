"""The quality benchmark behind benchmarks/bench_quality.py: the same scene and total steps trained as
(a) pretrain only, (b) pretrain + entropy, (c) pretrain + entropy + sugar; a mesh of each extracted
the same way and scored; one table and one figure."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from models.cameras import pixel_rays

from models.mesh.run_io import (MIN_ALPHA, RunInputError, default_mesh_path, evaluate_run, extract_run_mesh, load_run,  # noqa: F401
                     logger, save_mesh)


# ----- quality benchmark (benchmarks/bench_quality.py) -------------------------------------------------
BENCH_VARIANTS = ("a_pretrain", "b_pretrain_entropy", "c_pretrain_entropy_sugar")


def bench_schedules(total: int) -> Dict[str, list]:
    """The three schedules with the same total steps. (c) keeps the quick config's 7 : 2 : 6
    proportions (700 / 200 / 600 for 1,500); (b) shares (c)'s pretrain and spends the rest in the
    entropy stage, so (b) vs (c) isolates the sugar stage and (a) vs (b) the entropy stage."""
    if total < 15:
        raise RunInputError(f"total={total}: expected at least 15 steps (three stages of >= 2 steps)", param="total")
    pre, ent = round(total * 7 / 15), round(total * 2 / 15)
    return {
        "a_pretrain": [{"name": "pretrain", "steps": total}],
        "b_pretrain_entropy": [{"name": "pretrain", "steps": pre}, {"name": "entropy", "steps": total - pre}],
        "c_pretrain_entropy_sugar": [{"name": "pretrain", "steps": pre}, {"name": "entropy", "steps": ent},
                                     {"name": "sugar", "steps": total - pre - ent}],
    }


def _schedule_override(schedule: list) -> str:
    return "optim.stage_schedule=[" + ",".join(f"{{name:{s['name']},steps:{s['steps']}}}" for s in schedule) + "]"


def train_bench_run(config_name: str, out: Path, schedule: list, overrides: Sequence[str] = (),
                    reuse: bool = False) -> Dict[str, float]:
    """Train one variant in-process into `out`; returns seconds per stage (also in out/bench_timing.json).
    With reuse, a run whose timing file and final checkpoint exist is not trained again."""
    import time

    from hydra import compose, initialize_config_dir

    from models.trainers.checkpoint import checkpoint_name
    from models.trainers.inference import trainer_class

    total = sum(s["steps"] for s in schedule)
    timing_file = out / "bench_timing.json"
    if reuse and timing_file.is_file() and (out / "checkpoints" / checkpoint_name(total)).is_file():
        return json.loads(timing_file.read_text())
    if out.exists():
        import shutil
        shutil.rmtree(out)  # a partial or stale run of the benchmark's own folder
    config_dir = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=[*overrides, _schedule_override(schedule), f"output_dir={out}"])
    try:  # the configured trainer class: SingleTrainer, or MultiTrainer with trainer=MultiTrainer
        trainer = trainer_class(str(cfg.get("trainer", "SingleTrainer")))(cfg, output_dir=out)
    except ValueError as exc:
        raise RunInputError(f"{out.name}: bad configuration: {exc}") from None
    marks: Dict[str, float] = {}

    def on_stage(event, tr, stage):
        marks[f"{event}:{stage.name}"] = time.perf_counter()

    trainer.add_stage_callback(on_stage)
    try:
        trainer.train()
    except ValueError as exc:  # e.g. every Gaussian pruned at the start of the sugar stage
        raise RunInputError(f"{out.name}: training stopped: {exc}") from None
    end = time.perf_counter()
    timing = {s["name"]: marks.get(f"stage_end:{s['name']}", end) - marks.get(f"stage_start:{s['name']}", end)
              for s in schedule}
    timing_file.write_text(json.dumps(timing, indent=2))
    return timing


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


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """[H, W, 3] camera-frame unit normals from a depth map's gradients (0 where depth is invalid)."""
    H, W = depth.shape
    P = pixel_rays(K, W, H) * depth[..., None]
    n = np.cross(np.gradient(P, axis=1), np.gradient(P, axis=0))
    n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-12)
    n[~(depth > 0)] = 0
    return n


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
    """Rows: the three runs (test view: ground truth, render, ED depth, normals from depth, depth of
    the extracted mesh); last row: loss curves with the stage boundaries."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.mesh.metrics import load_mesh

    names = list(results)
    fig = plt.figure(figsize=(16, 3.0 * len(names) + 3.2))
    grid = fig.add_gridspec(len(names) + 1, 5)
    cols = ["ground truth", "render", "ED depth", "normals (depth gradient)", "mesh depth"]
    for r, name in enumerate(names):
        res = results[name]
        run = load_run(res["run_dir"])
        view = (run.scene.test_views or run.scene.train_views)[0]
        rgb, alpha, depth = run.trainer.render_view(view)
        K = view.K.double().cpu().numpy()
        d = np.where(alpha.cpu().numpy() >= MIN_ALPHA, depth.cpu().numpy(), 0.0)
        vmax = float(np.quantile(d[d > 0], 0.98)) if (d > 0).any() else 1.0
        md = mesh_depth(load_mesh(res["mesh"]), K, view.camera_to_world.double().cpu().numpy(), view.width,
                        view.height) if res.get("mesh") else np.zeros_like(d)
        tiles = [view.image.cpu().numpy(), rgb.cpu().numpy(), d, (normals_from_depth(d, K) + 1) / 2 * (d > 0)[..., None],
                 md]
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
                ax.set_ylabel(name, fontsize=9)
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


def run_quality_bench(out: Path, *, steps: int = 1500, config_name: str = "omnire_sugar_quick",
                      overrides: Sequence[str] = (), reuse: bool = False, method: str = "levelset",
                      poisson_depth: int = 9, pixel_stride: int = 1, tau: float = 0.05,
                      max_depth: Optional[float] = None, n_points: int = 200_000,
                      log=print) -> Dict[str, Dict[str, Any]]:
    """Train (a) pretrain, (b) pretrain + entropy, (c) pretrain + entropy + sugar with the same total
    steps, extract a mesh of each the same way, evaluate; writes out/bench_quality.json and
    out/bench_quality.png and returns the per-run results."""
    import time

    results: Dict[str, Dict[str, Any]] = {}
    for name, schedule in bench_schedules(steps).items():
        run_dir = out / name
        log(f"[{name}] schedule " + ", ".join(f"{s['name']} {s['steps']}" for s in schedule))
        timing = train_bench_run(config_name, run_dir, schedule, overrides, reuse=reuse)
        run = load_run(run_dir)
        t0 = time.perf_counter()
        try:  # a run with nothing to mesh (e.g. every Gaussian faded) is a result, not a crash
            mesh = extract_run_mesh(run, method=method, poisson_depth=poisson_depth, pixel_stride=pixel_stride)
            mesh_path, mesh_error = str(save_mesh(mesh, default_mesh_path(run, method))), None
        except RunInputError as exc:
            mesh_path, mesh_error = None, str(exc)
            log(f"[{name}] no mesh: {exc}")
        timing["mesh"] = time.perf_counter() - t0
        report = evaluate_run(run, mesh=mesh_path, tau=tau, n_points=n_points, max_depth=max_depth) if mesh_path \
            else evaluate_run(run, tau=tau, write=False) | {"surface": None}
        results[name] = {"run_dir": str(run_dir), "mesh": mesh_path, "mesh_error": mesh_error, "schedule": schedule,
                         "timing_s": timing, "psnr": report["test"]["psnr"], "ssim": report["test"]["ssim"],
                         "num_gaussians": report["num_gaussians"], "surface": report["surface"]}
        log(f"[{name}] PSNR {report['test']['psnr']:.2f} dB, Gaussians {report['num_gaussians']}")
    (out / "bench_quality.json").write_text(json.dumps(results, indent=2))
    quality_figure(results, out / "bench_quality.png")
    return results


def format_bench(results: Dict[str, Dict[str, Any]], tau: float) -> str:
    head = ["run", "PSNR", "SSIM", "Chamfer", f"F@{tau:g}m", "Gaussians", "time per stage (s)"]
    rows = []
    for name, r in results.items():
        s = r["surface"] or {}
        t = r["timing_s"]
        rows.append([name, f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{s.get('chamfer', float('nan')):.4f}",
                     f"{s.get('fscore', float('nan')):.4f}", str(r["num_gaussians"]),
                     " ".join(f"{k} {v:.0f}" for k, v in t.items())])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    text = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    a, c = results.get("a_pretrain"), results.get("c_pretrain_entropy_sugar")
    if a and c and a["surface"] and c["surface"]:
        ratio = c["surface"]["chamfer"] / a["surface"]["chamfer"]
        text.append(f"(c)/(a) Chamfer ratio {ratio:.2f} (target <= 0.6); PSNR (c) - (a) {c['psnr'] - a['psnr']:+.2f} dB "
                    "(target within 1 dB)")
    return "\n".join(text)
