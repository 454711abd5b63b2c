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
VARIANT_LABELS = {"a_pretrain": "(a) plain 3DGS", "b_pretrain_entropy": "(b) 3DGS + entropy",
                  "c_pretrain_entropy_sugar": "(c) staged"}
SEED_STEPS, QUICK_STEPS = 15_000, 1_500
UNDECIDED = (0.1, 0.9)  # an opacity in this open interval is "undecided" (neither opaque nor gone)


def bench_schedules(total: int) -> Dict[str, list]:
    """The three schedules with the same total steps. (c) keeps the seed's 7 : 2 : 6 proportions
    (7,000 / 2,000 / 6,000 for 15,000; 700 / 200 / 600 for 1,500); (b) shares (c)'s pretrain and spends
    the rest in the entropy stage, so (b) vs (c) isolates the sugar stage and (a) vs (b) the entropy stage."""
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
    def entry(s):
        hooks = s.get("hooks") or {}
        h = (",hooks:{" + ",".join(f"{k}:{str(bool(v)).lower()}" for k, v in hooks.items()) + "}") if hooks else ""
        return f"{{name:{s['name']},steps:{s['steps']}{h}}}"
    return "optim.stage_schedule=[" + ",".join(entry(s) for s in schedule) + "]"


def _compose(config_name: str, overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir

    config_dir = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def configured_hooks(config_name: str, overrides: Sequence[str] = ()) -> Dict[str, dict]:
    """Each configured stage's own hooks (by stage name), which the benchmark's schedules keep: a
    config that turns densification off in its entropy stage benchmarks with it off."""
    from omegaconf import OmegaConf

    cfg = _compose(config_name, overrides)
    return {str(s["name"]): dict(s.get("hooks") or {})
            for s in OmegaConf.to_container(cfg.optim.stage_schedule, resolve=True)}


def undecided_share(trainer) -> float:
    """Share of the Gaussians (every model) whose opacity lies in UNDECIDED."""
    lo, hi = UNDECIDED
    op = [torch.sigmoid(m.params["opacities"].detach()).reshape(-1) for m in trainer.models.values()]
    op = torch.cat(op) if op else torch.zeros(0)
    return float(((op > lo) & (op < hi)).float().mean()) if len(op) else 0.0


def train_bench_run(config_name: str, out: Path, schedule: list, overrides: Sequence[str] = (),
                    reuse: bool = False, budget_s: Optional[float] = None) -> Dict[str, float]:
    """Train one variant in-process into `out`; returns seconds per stage (also in out/bench_timing.json;
    per-stage statistics in out/bench_stages.json: Gaussians after each stage starts and when it ends,
    the share of undecided opacities at its end). The stages keep the hooks the config gives them.
    With reuse, a finished run (timing file and final checkpoint) is not trained again, and an
    unfinished one (a budget ran out) resumes from its latest checkpoint. With budget_s the run stops
    cleanly (checkpoint) after about that many seconds; the result is then None."""
    import threading
    import time

    from models.trainers.checkpoint import checkpoint_name, find_latest
    from models.trainers import configure_process
    from models.trainers.inference import trainer_class

    total = sum(s["steps"] for s in schedule)
    timing_file, stages_file, partial_file = out / "bench_timing.json", out / "bench_stages.json", out / "bench_partial.json"
    if reuse and timing_file.is_file() and (out / "checkpoints" / checkpoint_name(total)).is_file():
        return json.loads(timing_file.read_text())
    resume = bool(reuse and partial_file.is_file() and find_latest(out / "checkpoints") is not None)
    if out.exists() and not resume:
        import shutil
        shutil.rmtree(out)  # a partial or stale run of the benchmark's own folder
    hooks = configured_hooks(config_name, overrides)
    schedule = [dict(s, hooks={**hooks.get(s["name"], {}), **(s.get("hooks") or {})}) for s in schedule]
    cfg = _compose(config_name, [*overrides, _schedule_override(schedule), f"output_dir={out}"])
    try:  # the configured trainer class: SingleTrainer, or MultiTrainer with trainer=MultiTrainer
        configure_process(cfg)  # threads and seeds from the config, as omnire-train sets them
        trainer = trainer_class(str(cfg.get("trainer", "SingleTrainer")))(cfg, output_dir=out, resume=resume)
    except ValueError as exc:
        raise RunInputError(f"{out.name}: bad configuration: {exc}") from None
    acc = json.loads(partial_file.read_text()) if resume else {"seconds": {}, "stages": {}}
    seconds, stats = acc["seconds"], acc["stages"]

    def timed(fn):  # wall time of the stage decision (prune, neighbours) and the step, per stage
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[trainer.current_stage] = seconds.get(trainer.current_stage, 0.0) + time.perf_counter() - t0
        return run

    def on_stage(event, tr, stage):
        rec = stats.setdefault(stage.name, {})
        if event == "stage_start":
            rec["gaussians_at_start"] = tr.num_gaussians
        else:
            rec.update(gaussians_at_end=tr.num_gaussians, undecided_at_end=undecided_share(tr))

    trainer.update_stage, trainer.train_step = timed(trainer.update_stage), timed(trainer.train_step)
    trainer.add_stage_callback(on_stage)
    timer = threading.Timer(budget_s, trainer.request_stop) if budget_s else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        trainer.train()
    except ValueError as exc:  # e.g. a bad scene
        raise RunInputError(f"{out.name}: training stopped: {exc}") from None
    finally:
        if timer:
            timer.cancel()
    if not trainer.finished:
        partial_file.write_text(json.dumps(acc, indent=2))
        return None
    last = schedule[-1]["name"]
    stats.setdefault(last, {}).update(gaussians_at_end=trainer.num_gaussians, undecided_at_end=undecided_share(trainer))
    timing = {s["name"]: seconds.get(s["name"], 0.0) for s in schedule}
    stages_file.write_text(json.dumps({"schedule": schedule, "stages": stats}, indent=2))
    timing_file.write_text(json.dumps(timing, indent=2))
    partial_file.unlink(missing_ok=True)
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

    from models.depth_normals import normals_from_depth
    from models.mesh.metrics import load_mesh

    names = list(results)
    methods = sorted({m for r in results.values() for m in (r.get("meshes") or {})}) or ["levelset"]
    fig = plt.figure(figsize=(3.3 * (5 + len(methods)), 2.6 * len(names) + 3.2))
    grid = fig.add_gridspec(len(names) + 1, 5 + len(methods))
    cols = ["ground truth", "render", "ED depth", "normals (depth gradient)", "GT depth"] + [f"{m} mesh depth"
                                                                                           for m in methods]
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
        normals = (normals_from_depth(d, K, d > 0, towards_camera=False) + 1) / 2 * (d > 0)[..., None]
        tiles = [view.image.cpu().numpy(), rgb.cpu().numpy(), d, normals, gt, *mds]
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


def run_quality_bench(out: Path, *, steps: int = SEED_STEPS, config_name: str = "omnire_sugar",
                      overrides: Sequence[str] = (), reuse: bool = False, methods: Sequence[str] = ("levelset", "tsdf"),
                      poisson_depth: int = 9, pixel_stride: int = 1, tau: float = 0.05,
                      max_depth: Optional[float] = None, n_points: int = 200_000,
                      variants: Sequence[str] = BENCH_VARIANTS, budget_s: Optional[float] = None,
                      figure: bool = True, eval_device: str = "cpu", train_only: bool = False, log=print) -> Optional[Dict[str, Dict[str, Any]]]:
    """Train (a) pretrain, (b) pretrain + entropy, (c) pretrain + entropy + sugar with the same total
    steps, extract meshes of each the same ways (level set, TSDF), evaluate; writes out/bench_quality.json
    and out/bench_quality.png and returns the per-run results (None when budget_s ran out first: rerun
    with reuse to continue). Each run's scores are kept in <run>/bench_result.json and reused (with reuse)
    when the settings match. eval_device: where meshes are extracted and runs evaluated."""
    import time

    t_start = time.perf_counter()
    settings = {"methods": list(methods), "poisson_depth": poisson_depth, "pixel_stride": pixel_stride, "tau": tau,
                "max_depth": max_depth, "n_points": n_points}
    schedules = bench_schedules(steps)
    unknown = [v for v in variants if v not in schedules]
    if unknown:
        raise RunInputError(f"--variants {','.join(unknown)}: expected some of {', '.join(BENCH_VARIANTS)}")
    results: Dict[str, Dict[str, Any]] = {}
    for name in variants:
        schedule = schedules[name]
        run_dir = out / name
        log(f"[{name}] schedule " + ", ".join(f"{s['name']} {s['steps']}" for s in schedule))
        left = None if budget_s is None else budget_s - (time.perf_counter() - t_start)
        if left is not None and left <= 0:
            log(f"[{name}] time budget spent; rerun with --reuse to continue")
            return None
        timing = train_bench_run(config_name, run_dir, schedule, overrides, reuse=reuse, budget_s=left)
        if timing is None:
            log(f"[{name}] stopped by the time budget at a checkpoint; rerun with --reuse to continue")
            return None
        if train_only:
            results[name] = {"run_dir": str(run_dir), "timing_s": timing}
            continue
        cached = run_dir / "bench_result.json"
        if reuse and cached.is_file():
            prev = json.loads(cached.read_text())
            if prev.get("settings") == settings and prev.get("timing_s", {}).get("pretrain") == timing.get("pretrain"):
                results[name] = prev
                log(f"[{name}] reused its scores")
                continue
        run = load_run(run_dir, device=eval_device)
        stages = json.loads((run_dir / "bench_stages.json").read_text())
        tau_pix = pixel_footprint_tau(run.dataset(), max_depth)
        taus = [tau] + ([tau_pix["tau"]] if tau_pix else [])
        meshes, surfaces, mesh_errors = {}, {}, {}
        timing = dict(timing)
        for method in methods:
            t0 = time.perf_counter()
            try:  # a run with nothing to mesh (e.g. every Gaussian faded) is a result, not a crash
                mesh = extract_run_mesh(run, method=method, poisson_depth=poisson_depth, pixel_stride=pixel_stride,
                                        progress=False)
                meshes[method] = str(save_mesh(mesh, default_mesh_path(run, method)))
            except RunInputError as exc:
                mesh_errors[method] = str(exc)
                log(f"[{name}] no {method} mesh: {exc}")
            timing[f"mesh_{method}"] = time.perf_counter() - t0
            if method in meshes:
                from models.mesh.run_io import surface_metrics
                surf = surface_metrics(run, meshes[method], tau=tau, n_points=n_points, max_depth=max_depth,
                                       extra_taus=taus)
                surfaces[method] = surf
        from models.mesh.run_io import evaluate_run_images
        image = evaluate_run_images(run)
        res = {"run_dir": str(run_dir), "label": VARIANT_LABELS[name], "schedule": stages["schedule"],
               "stages": stages["stages"], "timing_s": timing, "psnr": image["test"]["psnr"],
               "ssim": image["test"]["ssim"], "num_gaussians": int(image["num_gaussians"]),
               "depth_error": depth_error(run, max_depth), "tau_pixel": tau_pix, "meshes": meshes,
               "mesh_errors": mesh_errors, "surfaces": surfaces,
               # the first method's mesh and scores under the names the figure and older readers use
               "mesh": meshes.get(methods[0]) if methods else None,
               "surface": surfaces.get(methods[0]) if methods else None, "settings": settings}
        cached.write_text(json.dumps(res, indent=2))
        results[name] = res
        log(f"[{name}] PSNR {res['psnr']:.2f} dB, Gaussians {res['num_gaussians']}, "
            + ", ".join(f"{m} Chamfer {surfaces[m]['chamfer']:.3f} m" for m in surfaces))
    if train_only:
        return results
    (out / "bench_quality.json").write_text(json.dumps(results, indent=2))
    if figure:
        quality_figure(results, out / "bench_quality.png")
    return results


def _f(x, fmt="{:.3f}"):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def format_bench(results: Dict[str, Dict[str, Any]], tau: float) -> str:
    """One row per run and mesh method, then the staged run's ratios against plain 3DGS."""
    tau_pix = next((r["tau_pixel"].get("tau") for r in results.values() if r.get("tau_pixel")), None)
    tp = f"{tau_pix:.3g}" if tau_pix else "?"
    head = ["run", "mesh", "PSNR", "SSIM", "depth err (m)", "Chamfer", "acc / comp", f"F@{tau:g}m",
            f"F@{tp}m (pixel)", "P / R @pixel", "NC", "Gaussians", "undecided α at stage ends", "seconds per stage"]
    rows = []
    for name, r in results.items():
        de = r.get("depth_error") or {}
        und = " ".join(f"{k} {v.get('undecided_at_end', float('nan')):.2f}" for k, v in r.get("stages", {}).items())
        secs = " ".join(f"{k} {v:.0f}" for k, v in r["timing_s"].items())
        for method, s in (r.get("surfaces") or {"-": None}).items():
            s = s or {}
            at = (s.get("at_tau") or {})
            pix = at.get(f"{tau_pix:.4g}", {}) if tau_pix else {}
            rows.append([name, method, _f(r["psnr"], "{:.2f}"), _f(r["ssim"], "{:.3f}"), _f(de.get("abs_mean")),
                         _f(s.get("chamfer")), f"{_f(s.get('accuracy'))} / {_f(s.get('completeness'))}",
                         _f(s.get("fscore")), _f(pix.get("fscore")),
                         f"{_f(pix.get('precision'))} / {_f(pix.get('recall'))}", _f(s.get("normal_consistency")),
                         str(r["num_gaussians"]), und, secs])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    text = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    text += [ratio_line(results, m, tau, tau_pix) for m in (results.get("a_pretrain", {}).get("surfaces") or {})]
    return "\n".join(t for t in text if t)


def staged_ratios(results: Dict[str, Dict[str, Any]], method: str, tau_pix: Optional[float] = None) -> Dict[str, float]:
    """(c) against (a) for one mesh method: Chamfer ratio, F ratios, completeness ratio, normal-consistency
    difference, PSNR difference (the issue's targets)."""
    a, c = results.get("a_pretrain"), results.get("c_pretrain_entropy_sugar")
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


def ratio_line(results, method: str, tau: float, tau_pix: Optional[float]) -> str:
    r = staged_ratios(results, method, tau_pix)
    if not r:
        return ""
    return (f"(c)/(a) {method}: Chamfer x{r['chamfer']:.2f} (target <= 0.6), F@{tau:g}m x{r['fscore']:.2f}"
            + (f", F@pixel x{r['fscore_pixel']:.2f}" if "fscore_pixel" in r else "") + " (target >= 1.5), completeness "
            f"x{r['completeness']:.2f} (target <= 1), NC {r['normal_consistency_diff']:+.3f} (target > 0), PSNR "
            f"{r['psnr_diff']:+.2f} dB (target >= -0.5)")
