"""Load a trained run without writing into it, extract its mesh, evaluate it.

The tools (tools/extract_mesh.py, tools/eval.py, tools/bench_quality.py) are thin wrappers around
these functions:

    run = load_run("outputs/quick")                 # a run folder or a checkpoint file
    mesh = extract_run_mesh(run, method="levelset") # SuGaR level set + Poisson (or "tsdf")
    path = save_mesh(mesh, default_mesh_path(run, "levelset"))
    report = evaluate_run(run, mesh=path, tau=0.05) # PSNR/SSIM + surface metrics vs GT

Every problem a user can cause (a missing checkpoint, a run folder without checkpoints, a model
without Gaussians, depth maps with no valid pixel, a mesh file that is not a mesh) raises
RunInputError with one line that names the file and what was expected.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, os.PathLike]
logger = logging.getLogger("models.mesh")

METHODS = ("levelset", "tsdf")
VIEW_SETS = ("train", "all")
# A pixel takes part in extraction only where the render is opaque enough for its ED depth
# (accumulated z / alpha) to describe a surface rather than a faint haze in the sky.
MIN_ALPHA = 0.5


class RunInputError(ValueError):
    """Bad input from the user (file, folder, option); the tools print its message, no traceback."""


@dataclass
class LoadedRun:
    run_dir: Path            # the run's output folder (exports/ and eval.json go here)
    checkpoint: Path
    trainer: Any             # SingleTrainer with the checkpoint's state, output_dir=None
    step: int

    @property
    def scene(self):
        return self.trainer.scene

    @property
    def model(self):
        return self.trainer.model


# ----- loading ----------------------------------------------------------------------------------
def resolve_checkpoint(path: PathLike) -> tuple[Path, Path]:
    """(run_dir, checkpoint file) for a run folder (its newest checkpoint) or a checkpoint file."""
    from models.trainers.checkpoint import find_latest

    p = Path(path)
    if not p.exists():
        raise RunInputError(f"{p} does not exist (expected a run folder with checkpoints/ or a checkpoint .pt file)")
    if p.is_dir():
        ckpt = find_latest(p / "checkpoints") or find_latest(p)
        if ckpt is None:
            raise RunInputError(f"run folder {p} has no checkpoints (expected {p / 'checkpoints'}/step_XXXXXX.pt; "
                                "has the run finished or saved one?)")
        return p, ckpt
    run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return run_dir, p


def load_run(path: PathLike, *, device: str = "cpu", num_threads: Optional[int] = None) -> LoadedRun:
    """The trained model and scene of a run folder or checkpoint, without writing anything."""
    from omegaconf import OmegaConf

    from models.trainers.checkpoint import load_checkpoint
    from models.trainers.single import SingleTrainer

    run_dir, ckpt = resolve_checkpoint(path)
    try:
        state = load_checkpoint(ckpt, required=("step", "stage", "config", "models"))
    except (FileNotFoundError, ValueError) as exc:
        raise RunInputError(str(exc)) from None
    if not isinstance(state["config"], dict):
        raise RunInputError(f"checkpoint {ckpt}: its 'config' is a {type(state['config']).__name__}, "
                            "expected the run's resolved config as a dict")
    cfg = OmegaConf.create(state["config"])
    cfg.device = device
    if num_threads is not None:
        cfg.num_threads = int(num_threads)
    del state  # the trainer reads the file again through its own resume path
    try:
        trainer = SingleTrainer(cfg, output_dir=None, resume=str(ckpt))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise RunInputError(f"checkpoint {ckpt}: could not rebuild the run ({exc})") from None
    return LoadedRun(run_dir=run_dir, checkpoint=ckpt, trainer=trainer, step=int(trainer.step))


# ----- rendering ----------------------------------------------------------------------------------
def select_views(run: LoadedRun, views: str = "train") -> list:
    if views not in VIEW_SETS:
        raise RunInputError(f"--views {views!r}: expected one of {', '.join(VIEW_SETS)}")
    scene = run.scene
    return list(scene.train_views) + (list(scene.test_views) if views == "all" else [])


@torch.no_grad()
def render_depths(run: LoadedRun, views: Sequence, *, min_alpha: float = MIN_ALPHA, mask_dynamic: bool = True,
                  progress: bool = False) -> Dict[str, list]:
    """Render colour and ED depth of each view. Depth is set to 0 (no ray) where alpha < min_alpha,
    where the depth is not finite, and (mask_dynamic) on the view's moving objects, which a static
    model does not describe. Returns numpy lists rgbs, depths, alphas, Ks, c2ws."""
    if run.model.num_gaussians == 0:
        raise RunInputError(f"checkpoint {run.checkpoint} has no Gaussians left (all pruned?); nothing to "
                            "render a depth map from")
    out: Dict[str, list] = {"rgbs": [], "depths": [], "alphas": [], "Ks": [], "c2ws": []}
    it = views
    if progress:
        from tqdm import tqdm
        it = tqdm(views, desc="render depth", unit="view")
    for view in it:
        rgb, alpha, depth = run.trainer.render_view(view, render_mode="RGB+ED")
        if depth is None:
            raise RunInputError(f"checkpoint {run.checkpoint}: the renderer returned no depth map")
        depth = depth.float().cpu().numpy().copy()
        alpha = alpha.float().cpu().numpy()
        ok = np.isfinite(depth) & (depth > 0) & (alpha >= min_alpha)
        if mask_dynamic and getattr(view, "dynamic_mask", None) is not None:
            ok &= ~view.dynamic_mask.cpu().numpy().astype(bool)
        depth[~ok] = 0.0
        out["rgbs"].append(rgb.float().cpu().numpy())
        out["depths"].append(depth)
        out["alphas"].append(alpha)
        out["Ks"].append(view.K.double().cpu().numpy())
        out["c2ws"].append(view.camera_to_world.double().cpu().numpy())
    if not any((d > 0).any() for d in out["depths"]):
        raise RunInputError(f"checkpoint {run.checkpoint}: no pixel of the {len(views)} view(s) has a rendered "
                            f"depth with alpha >= {min_alpha} (are the Gaussians all transparent or pruned?)")
    return out


# ----- extraction ---------------------------------------------------------------------------------
def extract_run_mesh(run: LoadedRun, *, method: str = "levelset", views: str = "train", level: float = 0.3,
                     poisson_depth: int = 10, target_triangles: Optional[int] = None, pixel_stride: int = 1,
                     min_opacity: float = 0.5, n_threads: int = 1, depth_trunc: Optional[float] = None,
                     progress: bool = True):
    """A trimesh of the run's surface. levelset: SuGaR (drop α < min_opacity, level-set points along
    the pixel rays around the rendered depth, density-gradient normals, outlier removal, Poisson,
    low-density vertices dropped, optional decimation). tsdf: fusion of the rendered depth maps.

    n_threads: open3d's Poisson threads (-1 = all cores). 1 by default: on a shared 2-core machine
    open3d's OpenMP threads spin against other processes (measured 7.0 s with -1 vs 0.4 s with 1
    for the same 1,400 points at depth 6)."""
    from .levelset import levelset_mesh
    from .tsdf import tsdf_fusion

    if method not in METHODS:
        raise RunInputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if pixel_stride < 1:
        raise RunInputError(f"--pixel-stride {pixel_stride}: expected an integer >= 1")
    if target_triangles is not None and target_triangles < 1:
        raise RunInputError(f"--target-triangles {target_triangles}: expected a positive integer")
    if not 0 < level < 1:
        raise RunInputError(f"--level {level}: expected a density level in (0, 1)")
    chosen = select_views(run, views)
    r = render_depths(run, chosen, progress=progress)
    if method == "tsdf":
        if depth_trunc is None:
            valid = np.concatenate([d[d > 0] for d in r["depths"]])
            depth_trunc = max(2.0 * float(run.scene.scene_radius), float(np.quantile(valid, 0.98)))
        elif not depth_trunc > 0:
            raise RunInputError(f"--depth-trunc {depth_trunc}: expected a positive distance in metres")
        mesh = tsdf_fusion(r["depths"], r["Ks"], r["c2ws"], r["rgbs"], depth_trunc=float(depth_trunc),
                           progress=progress)
    else:
        gs = run.model.get_gaussians()
        opac = gs["opacities"].detach().reshape(-1)
        if not bool((opac >= min_opacity).any()):
            raise RunInputError(f"checkpoint {run.checkpoint}: no Gaussian has opacity >= {min_opacity}; "
                                "the level-set extraction has nothing to work with (try --method tsdf)")
        masks = [d > 0 for d in r["depths"]]
        try:
            mesh = levelset_mesh(
                r["depths"], r["Ks"], r["c2ws"], means=gs["means"].detach(), scales=gs["scales"].detach(),
                opacities=opac, quats=gs["quats"].detach(), rgbs=r["rgbs"], masks=masks, level=level,
                min_opacity=min_opacity, pixel_stride=pixel_stride, poisson_depth=poisson_depth,
                target_triangles=target_triangles, n_threads=n_threads, progress=progress)
        except ValueError as exc:  # e.g. too few level-set points for Poisson
            raise RunInputError(f"checkpoint {run.checkpoint}: level-set extraction failed: {exc}") from None
    if len(mesh.faces) == 0:
        raise RunInputError(f"checkpoint {run.checkpoint}: {method} extraction produced an empty mesh")
    return mesh


def default_mesh_path(run: LoadedRun, method: str) -> Path:
    return run.run_dir / "exports" / f"mesh_{method}.ply"


def save_mesh(mesh, path: PathLike) -> Path:
    """Write a PLY atomically (temporary file + rename) so a failed export never leaves half a file."""
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise RunInputError(f"--out {path}: expected a .ply path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(mesh.export(file_type="ply"))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ----- evaluation ---------------------------------------------------------------------------------
def find_run_mesh(run: LoadedRun) -> Optional[Path]:
    for method in METHODS:
        p = default_mesh_path(run, method)
        if p.is_file():
            return p
    return None


def training_cameras(scene, max_depth: Optional[float] = None) -> list:
    """(K, c2w, W, H, gt_depth) per training view: the region the training cameras saw. With
    max_depth, GT depth beyond it counts as unseen (a street camera sees the road 100+ m away)."""
    cams = []
    for v in scene.train_views:
        depth = None if v.gt_depth is None else v.gt_depth.float().cpu().numpy().copy()
        if depth is not None and max_depth is not None:
            depth[depth > max_depth] = np.inf
        cams.append((v.K.double().cpu().numpy(), v.camera_to_world.double().cpu().numpy(), v.width, v.height, depth))
    return cams


def seen_points(cameras) -> np.ndarray:
    """World points of every valid GT-depth pixel of the cameras (K, c2w, W, H, depth)."""
    pts = []
    for K, c2w, _, _, depth in cameras:
        if depth is None:
            continue
        v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
        z = depth[v, u]
        x = (u + 0.5 - K[0, 2] - K[0, 1] * (v + 0.5 - K[1, 2]) / K[1, 1]) / K[0, 0] * z
        y = (v + 0.5 - K[1, 2]) / K[1, 1] * z
        pts.append(np.stack([x, y, z], 1) @ c2w[:3, :3].T + c2w[:3, 3])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def crop_mesh_to_box(mesh, lo, hi, max_edge: float):
    """The faces of mesh near the box [lo, hi], subdivided to edges <= max_edge first, so that a
    street's 100-m ground triangles are cut close to the box (trimesh's exact slicing needs shapely)."""
    import trimesh

    V, F = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)
    outside = lambda V, F: ((V[F] < lo).all(1) | (V[F] > hi).all(1)).any(1)  # noqa: E731
    F = F[~outside(V, F)]
    V, F = trimesh.remesh.subdivide_to_size(V, F, max_edge=max_edge)
    return trimesh.Trimesh(V, F[~outside(V, F)], process=False)


def _closest_on_mesh(mesh, points):
    """Exact point-to-triangle distances and the hit triangles' unit normals (open3d)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    res = scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
    dist = np.linalg.norm(res["points"].numpy() - points, axis=1)
    return dist, res["primitive_normals"].numpy().astype(np.float64)


def point_to_mesh_metrics(pred, gt, cameras, *, tau: float = 0.05, n_points: int = 200_000, seed: int = 0,
                          crop_margin: float = 1.0) -> Dict[str, float]:
    """models.mesh.mesh_metrics' quantities, with exact point-to-mesh distances.

    Why not mesh_metrics directly: it measures point-to-point distances between two surface samples,
    whose spacing at street scale (a GT street mesh of ~10^5 m^2, 200k samples) is ~0.5 m, far above
    τ = 5 cm: the GT mesh scored against itself gets Chamfer 1.04 m and F-score 0.002 on the tiny
    test street (0.06 m / 0.43 with 1M samples on the cropped mesh). Here samples of one mesh are
    matched to the other mesh's triangles (open3d RaycastingScene), so a perfect mesh scores 0.
    Samples: the prediction's whole surface, kept where visible_region_filter(mode="pred") holds; the
    GT mesh cropped to the box of the points the training cameras' GT depth saw (+ crop_margin),
    kept where visible_region_filter(mode="gt") holds (same region rule as mesh_metrics)."""
    from .metrics import load_mesh, sample_surface, visible_region_filter

    pred, gt = load_mesh(pred), load_mesh(gt)
    seen = seen_points(cameras)
    if len(seen) == 0:
        raise RunInputError("the training cameras have no ground-truth depth; the scored region is undefined")
    lo, hi = seen.min(0) - crop_margin, seen.max(0) + crop_margin
    gt_crop = crop_mesh_to_box(gt, lo, hi, max_edge=max(crop_margin, 4 * tau))
    if len(gt_crop.faces) == 0:
        raise RunInputError("no ground-truth surface lies in the region the training cameras saw")
    rng = np.random.default_rng(seed)
    p_pts, p_nrm = sample_surface(pred, n_points, rng)
    g_pts, g_nrm = sample_surface(gt_crop, n_points, rng)
    p_pts = p_pts[keep := visible_region_filter(p_pts, cameras, mode="pred", far_margin=tau)]
    p_nrm = p_nrm[keep]
    g_pts = g_pts[keep := visible_region_filter(g_pts, cameras, mode="gt", far_margin=tau)]
    g_nrm = g_nrm[keep]
    if len(g_pts) == 0:
        raise RunInputError("no ground-truth surface lies in the region the training cameras saw")
    g_dist, g_hit = _closest_on_mesh(pred, g_pts)
    completeness, recall = g_dist.mean(), (g_dist < tau).mean()
    normal_completeness = np.abs(np.sum(g_nrm * g_hit, axis=1)).mean()
    if len(p_pts):
        p_dist, p_hit = _closest_on_mesh(gt, p_pts)
        accuracy, precision = p_dist.mean(), (p_dist < tau).mean()
        normal_accuracy = np.abs(np.sum(p_nrm * p_hit, axis=1)).mean()
    else:
        accuracy = precision = normal_accuracy = float("nan")
    fscore = 2 * precision * recall / (precision + recall) if np.isfinite(precision) and precision + recall > 0 else 0.0
    out = {"accuracy": accuracy, "completeness": completeness, "chamfer": (accuracy + completeness) / 2,
           "precision": precision, "recall": recall, "fscore": fscore, "normal_accuracy": normal_accuracy,
           "normal_completeness": normal_completeness,
           "normal_consistency": (normal_accuracy + normal_completeness) / 2,
           "tau": tau, "n_pred": len(p_pts), "n_gt": len(g_pts)}
    return {k: float(v) for k, v in out.items()}


def surface_metrics(run: LoadedRun, mesh, *, tau: float = 0.05, n_points: int = 200_000,
                    max_depth: Optional[float] = None) -> Optional[Dict[str, Any]]:
    """Surface metrics of a mesh (trimesh or path) against the scene's GT mesh, restricted to what
    the training cameras saw; None when the scene has no ground truth."""
    from .metrics import load_mesh

    if run.scene.gt_mesh_path is None:
        return None
    try:
        pred = load_mesh(mesh)
    except ValueError as exc:
        raise RunInputError(str(exc)) from None
    return point_to_mesh_metrics(pred, run.scene.load_gt_mesh(), training_cameras(run.scene, max_depth), tau=tau,
                                 n_points=n_points)


def evaluate_run(run: LoadedRun, *, mesh: Optional[PathLike] = None, tau: float = 0.05, n_points: int = 200_000,
                 max_depth: Optional[float] = None, write: bool = True) -> Dict[str, Any]:
    """PSNR/SSIM on the test views and, where the scene has ground truth and a mesh exists (mesh, or
    <run>/exports/mesh_levelset.ply, or mesh_tsdf.ply), surface metrics. Writes <run>/eval.json."""
    if not tau > 0:
        raise RunInputError(f"--tau {tau}: expected a positive distance in metres")
    if max_depth is not None and not max_depth > 0:
        raise RunInputError(f"--max-depth {max_depth}: expected a positive distance in metres")
    if mesh is not None and not Path(mesh).is_file():
        raise RunInputError(f"mesh file {mesh} does not exist (expected a .ply written by tools/extract_mesh.py)")
    image = run.trainer.evaluate()
    report: Dict[str, Any] = {"run": str(run.run_dir), "checkpoint": str(run.checkpoint), "step": run.step,
                              "num_gaussians": int(image["num_gaussians"]), "test": image["test"], "surface": None}
    if run.scene.gt_mesh_path is None:
        report["surface_note"] = "the scene has no ground-truth mesh"
    else:
        mesh_path = Path(mesh) if mesh is not None else find_run_mesh(run)
        if mesh_path is None:
            report["surface_note"] = (f"no mesh in {run.run_dir / 'exports'}; run tools/extract_mesh.py first "
                                      "or pass --mesh")
        else:
            m = surface_metrics(run, mesh_path, tau=tau, n_points=n_points, max_depth=max_depth)
            m["mesh"] = str(mesh_path)
            m["region"] = "seen by the training cameras (GT depth" + (
                f" <= {max_depth:g} m)" if max_depth is not None else ")")
            m["distances"] = "exact point-to-mesh (open3d), samples restricted to the region"
            report["surface"] = m
    if write:
        path = run.run_dir / "eval.json"
        tmp = path.with_name(".eval.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, path)
        report["written"] = str(path)
    return report


def format_eval(report: Dict[str, Any]) -> str:
    t = report["test"]
    rows = [("checkpoint", f"{report['checkpoint']} (step {report['step']})"),
            ("Gaussians", f"{report['num_gaussians']}"),
            (f"PSNR ({t['split']}, {t['views']} views)", f"{t['psnr']:.2f} dB"),
            ("SSIM", f"{t['ssim']:.4f}")]
    s = report.get("surface")
    if s is None:
        rows.append(("surface", report.get("surface_note", "-")))
    else:
        tau = s["tau"]
        rows += [("mesh", s["mesh"]),
                 ("region", s["region"]),
                 ("Chamfer accuracy (pred→GT)", f"{s['accuracy']:.4f} m"),
                 ("Chamfer completeness (GT→pred)", f"{s['completeness']:.4f} m"),
                 ("Chamfer mean", f"{s['chamfer']:.4f} m"),
                 (f"precision @ τ={tau:g} m", f"{s['precision']:.4f}"),
                 (f"recall @ τ={tau:g} m", f"{s['recall']:.4f}"),
                 (f"F-score @ τ={tau:g} m", f"{s['fscore']:.4f}"),
                 ("normal consistency", f"{s['normal_consistency']:.4f}")]
    if "written" in report:
        rows.append(("written", report["written"]))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)



# ----- quality benchmark (tools/bench_quality.py) -------------------------------------------------
BENCH_VARIANTS = ("a_pretrain", "b_pretrain_entropy", "c_pretrain_entropy_sugar")


def bench_schedules(total: int) -> Dict[str, list]:
    """The three schedules with the same total steps. (c) keeps the quick config's 7 : 2 : 6
    proportions (700 / 200 / 600 for 1,500); (b) shares (c)'s pretrain and spends the rest in the
    entropy stage, so (b) vs (c) isolates the sugar stage and (a) vs (b) the entropy stage."""
    if total < 15:
        raise RunInputError(f"--steps {total}: expected at least 15 (three stages of >= 2 steps)")
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
    from models.trainers.single import SingleTrainer

    total = sum(s["steps"] for s in schedule)
    timing_file = out / "bench_timing.json"
    if reuse and timing_file.is_file() and (out / "checkpoints" / checkpoint_name(total)).is_file():
        return json.loads(timing_file.read_text())
    if out.exists():
        import shutil
        shutil.rmtree(out)  # a partial or stale run of the benchmark's own folder
    config_dir = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=[*overrides, _schedule_override(schedule), f"output_dir={out}"])
    try:
        trainer = SingleTrainer(cfg, output_dir=out)
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
    v, u = np.mgrid[0:H, 0:W] + 0.5
    P = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
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
    v, u = np.mgrid[0:height, 0:width] + 0.5
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d_world = d_cam @ c2w[:3, :3].T
    rays = np.concatenate([np.broadcast_to(c2w[:3, 3], d_world.shape), d_world], -1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()  # along the unnormalised ray: t = camera z
    return np.where(np.isfinite(t), t, 0.0)


def quality_figure(results: Dict[str, Dict[str, Any]], path: Path) -> Path:
    """Rows: the three runs (test view: ground truth, render, ED depth, normals from depth, depth of
    the extracted mesh); last row: loss curves with the stage boundaries."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import load_mesh

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
