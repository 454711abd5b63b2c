"""Load a trained run without writing into it, extract its mesh, evaluate it.

The commands omnire-mesh and omnire-eval and the quality comparison (models/quality/) are built on
these functions, which take a run opened by models.run.open_run (its GaussianScene and cameras; no
dataset is read, except by evaluation for the ground truth):

    run = load_run("outputs/quick")                 # a run folder or a checkpoint file (= open_run)
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
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from models.atomic_write import atomic_write
from models.cameras import transform_points, unproject_pixels
from models.camera_models import held_out_pose
from models.evaluation import evaluate_images
from models.run import LoadedRun, RunInputError, open_run

# The one scoring protocol of omnire-eval, the quality benchmark and the results tables: ground-truth
# surface the training cameras saw within 40 m (a street camera sees the road 100+ m away, where a
# pixel spans decimetres), F-score at 5 cm, 200,000 samples per mesh.
PROTOCOL_MAX_DEPTH = 40.0
PROTOCOL_TAU = 0.05
PROTOCOL_POINTS = 200_000


def protocol_text(max_depth: Optional[float], tau: float, n_points: int) -> str:
    """The protocol as printed beside the figures."""
    depth = "at any depth" if max_depth is None else f"within {max_depth:g} m"
    return f"GT surface seen by the training cameras {depth}; τ = {tau:g} m; {n_points:,} samples per mesh"

PathLike = Union[str, os.PathLike]
logger = logging.getLogger("models.mesh")

METHODS = ("levelset", "tsdf")
# The level set needs Gaussians with thickness: its density samples along each ray (21 in ±3σ) never
# land in the band of a Gaussian a few micrometres thick, which flattening (sugar.flatten_weight) makes.
# Below this median smallest scale, as a fraction of the scene radius, "auto" meshes by TSDF
# (docs/results.md, "Which mesh for flat Gaussians").
FLAT_SCALE_RATIO = 2e-5
DEPTHS = ("expected", "unbiased")   # the rendered depth a mesh is extracted from (render_depths)
VIEW_SETS = ("train", "all")
# A pixel takes part in extraction only where the render is opaque enough for its ED depth
# (accumulated z / alpha) to describe a surface rather than a faint haze in the sky.
MIN_ALPHA = 0.5


def cli_message(exc: BaseException, parser=None, renames: Optional[Dict[str, str]] = None) -> str:
    """The error's message for a command line: a parameter it names (`pixel_stride=0: ...`)
    becomes the parser's flag for it (`--pixel-stride 0: ...`); `renames` maps parameters whose
    flag has another name (save_mesh's `path` is extract_mesh's `--out`)."""
    message, param = str(exc), getattr(exc, "param", None)
    if param is None or not message.startswith(f"{param}="):
        return message
    flags = dict(renames or {})
    if parser is not None:
        for action in parser._actions:
            if action.option_strings:
                flags.setdefault(action.dest, action.option_strings[-1])
    flag = flags.get(param)
    return f"{flag} {message[len(param) + 1:]}" if flag else message


# ----- loading ----------------------------------------------------------------------------------
def load_run(path: PathLike, *, device: str = "cpu") -> LoadedRun:
    """The GaussianScene, cameras and config of a run folder or checkpoint (any trainer class), for
    inference: nothing written, no dataset read, the process's thread count and random state left
    alone (models.run.open_run, whose errors are RunInputErrors)."""
    return open_run(path, device=device)


# ----- rendering ----------------------------------------------------------------------------------
def select_views(run: LoadedRun, views: str = "train") -> list:
    if views not in VIEW_SETS:
        raise RunInputError(f"views={views!r}: expected one of {', '.join(VIEW_SETS)}", param="views")
    cameras = run.cameras
    return list(cameras.train_views) + (list(cameras.test_views) if views == "all" else [])


@torch.no_grad()
def render_depths(run: LoadedRun, views: Sequence, *, min_alpha: float = MIN_ALPHA, mask_dynamic: bool = True,
                  progress: bool = False, depth: str = "expected") -> Dict[str, list]:
    """Render colour and depth of each view: ``depth="expected"`` the ED depth (accumulated camera z
    / alpha), ``"unbiased"`` the plane depth of models.rendering.surface (where the pixel has a normal
    its ray meets). Depth is set to 0 (no ray) where alpha < min_alpha, where the depth is not finite,
    and (mask_dynamic) on the view's moving objects, which a static model does not describe. Returns
    numpy lists rgbs, depths, alphas, Ks, c2ws."""
    if depth not in DEPTHS:
        raise RunInputError(f"depth={depth!r}: expected one of {', '.join(DEPTHS)}", param="depth")
    if run.model.num_gaussians == 0:
        raise RunInputError(f"checkpoint {run.checkpoint} has no Gaussians left (all pruned?); nothing to "
                            "render a depth map from")
    out: Dict[str, list] = {"rgbs": [], "depths": [], "alphas": [], "Ks": [], "c2ws": []}
    it = views
    if progress:
        from tqdm import tqdm
        it = tqdm(views, desc="render depth", unit="view")
    kind = depth
    for view in it:
        if kind == "unbiased":
            rendered = run.scene.render(view.camera, view.frame_idx, render_mode="RGB", surface=True)
            rgb, alpha = rendered.rgb.clamp(0, 1), rendered.alpha
            depth = torch.where(rendered.surface.valid, rendered.surface.unbiased_depth, torch.zeros_like(alpha))
        else:
            rgb, alpha, depth = run.scene.render_view(view, render_mode="RGB+ED")
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
                     progress: bool = True, depth: str = "expected"):
    """A trimesh of the run's surface. levelset: SuGaR (drop α < min_opacity, level-set points along
    the pixel rays around the rendered depth, density-gradient normals, outlier removal, Poisson,
    low-density vertices dropped, optional decimation). tsdf: fusion of the rendered depth maps.
    depth: which rendered depth both read, "expected" or "unbiased" (render_depths).

    n_threads: open3d's Poisson threads (-1 = all cores). 1 by default: on a shared 2-core machine
    open3d's OpenMP threads spin against other processes (measured 7.0 s with -1 vs 0.4 s with 1
    for the same 1,400 points at depth 6)."""
    from .levelset import levelset_mesh
    from .tsdf import tsdf_fusion

    if method not in METHODS:
        raise RunInputError(f"method={method!r}: expected one of {', '.join(METHODS)}", param="method")
    if pixel_stride < 1:
        raise RunInputError(f"pixel_stride={pixel_stride}: expected an integer >= 1", param="pixel_stride")
    if target_triangles is not None and target_triangles < 1:
        raise RunInputError(f"target_triangles={target_triangles}: expected a positive integer",
                            param="target_triangles")
    if not 0 < level < 1:
        raise RunInputError(f"level={level}: expected a density level in (0, 1)", param="level")
    chosen = select_views(run, views)
    r = render_depths(run, chosen, progress=progress, depth=depth)
    if method == "tsdf":
        if depth_trunc is None:
            valid = np.concatenate([d[d > 0] for d in r["depths"]])
            depth_trunc = max(2.0 * float(run.cameras.scene_radius), float(np.quantile(valid, 0.98)))
        elif not depth_trunc > 0:
            raise RunInputError(f"depth_trunc={depth_trunc}: expected a positive distance in metres",
                                param="depth_trunc")
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


def auto_mesh_method(run: LoadedRun, min_opacity: float = 0.5) -> Tuple[str, str]:
    """The mesh method for this run and why: the level set (SuGaR's) unless the Gaussians it would
    keep (opacity >= min_opacity) are flat, median smallest scale < FLAT_SCALE_RATIO x scene radius,
    where it cannot find their surface and the TSDF does."""
    if run.model.num_gaussians == 0:
        return "levelset", "no Gaussians"
    gs = run.model.get_gaussians()
    keep = gs["opacities"].detach().reshape(-1) >= min_opacity
    if not bool(keep.any()):
        return "tsdf", f"no Gaussian has opacity >= {min_opacity} for the level set"
    smallest = gs["scales"].detach()[keep].min(dim=-1).values
    median = float(smallest.median())
    limit = FLAT_SCALE_RATIO * float(run.cameras.scene_radius)
    if median < limit:
        return "tsdf", (f"flat Gaussians (median smallest scale {1e3 * median:.3g} mm < {1e3 * limit:.3g} mm): "
                        "the level set cannot sample them")
    return "levelset", f"median smallest scale {1e3 * median:.3g} mm"


def default_mesh_path(run: LoadedRun, method: str, depth: str = "expected") -> Path:
    return run.run_dir / "exports" / f"mesh_{method}{'' if depth == 'expected' else '_' + depth}.ply"


def split_method(name: str) -> Tuple[str, str]:
    """A benchmark's mesh name -> (method, depth): "tsdf" -> ("tsdf", "expected"), "tsdf_unbiased" ->
    ("tsdf", "unbiased")."""
    method, _, depth = name.partition("_")
    depth = depth or "expected"
    if method not in METHODS or depth not in DEPTHS:
        raise RunInputError(f"mesh {name!r}: expected a method ({', '.join(METHODS)}), optionally with _unbiased "
                            "(meshed from the unbiased depth)", param="methods")
    return method, depth


def save_mesh(mesh, path: PathLike) -> Path:
    """Write a PLY atomically (temporary file + rename) so a failed export never leaves half a file."""
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise RunInputError(f"path={path}: expected a .ply path", param="path")
    # per-vertex normals too (viewers shade with them; trimesh writes them only when asked)
    return atomic_write(path, lambda f: f.write(mesh.export(file_type="ply", vertex_normal=True)))


# ----- evaluation ---------------------------------------------------------------------------------
def find_run_mesh(run: LoadedRun) -> Optional[Path]:
    """The run's exported mesh: the one omnire-mesh's auto method writes, else the other."""
    first = auto_mesh_method(run)[0]
    for method in (first, *(m for m in METHODS if m != first)):
        p = default_mesh_path(run, method)
        if p.is_file():
            return p
    return None


def training_cameras(scene, max_depth: Optional[float] = None) -> list:
    """(K, c2w, W, H, gt_depth) per training view: the region the training cameras saw. With
    max_depth, GT depth beyond it counts as unseen (a street camera sees the road 100+ m away).
    A synthetic street with pose noise renders its GT depth from the true poses and writes noisy ones:
    the region is the true cameras' (gt/imperfections.json), the same as on the clean street."""
    from scenes.imperfections import load_imperfections, true_camera_to_world_np

    root = getattr(scene, "root", None)
    imperfections = load_imperfections(root) if root is not None else None
    cams = []
    for v in scene.train_views:
        depth = None if v.gt_depth is None else v.gt_depth.float().cpu().numpy().copy()
        if depth is not None and max_depth is not None:
            depth[depth > max_depth] = np.inf
        c2w = (v.camera_to_world.double().cpu().numpy() if imperfections is None
               else true_camera_to_world_np(scene, v.frame_idx, v.cam_name, imperfections))
        cams.append((v.K.double().cpu().numpy(), c2w, v.width, v.height, depth))
    return cams


def seen_points(cameras) -> np.ndarray:
    """World points of every valid GT-depth pixel of the cameras (K, c2w, W, H, depth)."""
    pts = []
    for K, c2w, _, _, depth in cameras:
        if depth is None:
            continue
        v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
        pts.append(transform_points(c2w, unproject_pixels(u + 0.5, v + 0.5, depth[v, u], K)))
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


class ScoredSamples(NamedTuple):
    """The samples a surface metric scores, each with its exact distance to the other mesh."""
    p_pts: np.ndarray   # predicted-surface samples in the region [P, 3]
    p_nrm: np.ndarray   # their face normals
    p_dist: np.ndarray  # distance to the GT mesh [P] (empty when P = 0)
    p_hit: np.ndarray   # the hit GT triangles' unit normals
    g_pts: np.ndarray   # GT samples in the region [G, 3]
    g_nrm: np.ndarray
    g_dist: np.ndarray  # distance to the predicted mesh [G]
    g_hit: np.ndarray


def scored_samples(pred, gt, cameras, *, tau: float = 0.05, n_points: int = 200_000, seed: int = 0,
                   crop_margin: float = 1.0) -> ScoredSamples:
    """The samples of point_to_mesh_metrics (its docstring says which) and their distances."""
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
    p_dist, p_hit = _closest_on_mesh(gt, p_pts) if len(p_pts) else (np.zeros(0), np.zeros((0, 3)))
    return ScoredSamples(p_pts, p_nrm, p_dist, p_hit, g_pts, g_nrm, g_dist, g_hit)


def point_to_mesh_metrics(pred, gt, cameras, *, tau: float = 0.05, n_points: int = 200_000, seed: int = 0,
                          crop_margin: float = 1.0, extra_taus: Sequence[float] = ()) -> Dict[str, Any]:
    """The surface metrics of models/mesh/metrics.py's docstring, with exact point-to-mesh distances.

    Why not point-to-point distances between two surface samples: their spacing at street scale (a GT street mesh of ~10^5 m^2, 200k samples) is ~0.5 m, far above
    τ = 5 cm: the GT mesh scored against itself gets Chamfer 1.04 m and F-score 0.002 on the tiny
    test street (0.06 m / 0.43 with 1M samples on the cropped mesh). Here samples of one mesh are
    matched to the other mesh's triangles (open3d RaycastingScene), so a perfect mesh scores 0.
    Samples: the prediction's whole surface, kept where visible_region_filter(mode="pred") holds; the
    GT mesh cropped to the box of the points the training cameras' GT depth saw (+ crop_margin),
    kept where visible_region_filter(mode="gt") holds.
    extra_taus: precision / recall / F at these distances too, from the same samples ("at_tau")."""
    p_pts, p_nrm, p_dist, p_hit, g_pts, g_nrm, g_dist, g_hit = scored_samples(
        pred, gt, cameras, tau=tau, n_points=n_points, seed=seed, crop_margin=crop_margin)
    completeness, recall = g_dist.mean(), (g_dist < tau).mean()
    normal_completeness = np.nanmean(np.abs(np.sum(g_nrm * g_hit, axis=1)))  # degenerate triangles: NaN normals
    if len(p_pts):
        accuracy, precision = p_dist.mean(), (p_dist < tau).mean()
        normal_accuracy = np.nanmean(np.abs(np.sum(p_nrm * p_hit, axis=1)))
    else:
        accuracy = precision = normal_accuracy = float("nan")
    fscore = 2 * precision * recall / (precision + recall) if np.isfinite(precision) and precision + recall > 0 else 0.0
    out = {"accuracy": accuracy, "completeness": completeness, "chamfer": (accuracy + completeness) / 2,
           "precision": precision, "recall": recall, "fscore": fscore, "normal_accuracy": normal_accuracy,
           "normal_completeness": normal_completeness,
           "normal_consistency": (normal_accuracy + normal_completeness) / 2,
           "tau": tau, "n_pred": len(p_pts), "n_gt": len(g_pts)}
    out = {k: float(v) for k, v in out.items()}
    if extra_taus:
        out["at_tau"] = {}
        for t in extra_taus:
            prec = float((p_dist < t).mean()) if len(p_pts) else float("nan")
            rec = float((g_dist < t).mean())
            f = 2 * prec * rec / (prec + rec) if np.isfinite(prec) and prec + rec > 0 else 0.0
            out["at_tau"][f"{t:.4g}"] = {"tau": float(t), "precision": prec, "recall": rec, "fscore": float(f)}
    return out


def surface_metrics(run: LoadedRun, mesh, *, tau: float = 0.05, n_points: int = 200_000,
                    max_depth: Optional[float] = None, extra_taus: Sequence[float] = ()) -> Optional[Dict[str, Any]]:
    """Surface metrics of a mesh (trimesh or path) against the scene's GT mesh, restricted to what
    the training cameras saw; None when the scene has no ground truth. Reads the run's dataset (the
    ground truth: GT mesh and depth)."""
    from .metrics import load_mesh

    dataset = run.dataset()
    if dataset.gt_mesh_path is None:
        return None
    try:
        pred = load_mesh(mesh)
    except ValueError as exc:
        raise RunInputError(str(exc)) from None
    return point_to_mesh_metrics(pred, dataset.load_gt_mesh(), training_cameras(dataset, max_depth), tau=tau,
                                 n_points=n_points, extra_taus=extra_taus)


def evaluate_run_images(run: LoadedRun, alignment_steps: Optional[int] = None) -> Dict[str, Any]:
    """PSNR / SSIM of an opened run on its dataset's test views, as its trainer computed them at the end
    of training (models.evaluation; reads the dataset for the ground-truth images). ``alignment_steps``:
    test-pose alignment steps in place of the run's cameras.pose.test_alignment_steps (a benchmark that
    scores every run alike)."""
    refinement = run.cameras.pose_refinement
    dataset = run.dataset()
    pose = run.config.cameras.pose if "cameras" in run.config else None
    if alignment_steps is None:
        alignment_steps = int(pose.test_alignment_steps) if pose is not None else 0
    test = evaluate_images(
        run.scene, dataset, mask_dynamic=bool(run.config.loss.mask_dynamic),
        test_pose=None if refinement is None else (lambda v: held_out_pose(refinement, dataset.train_views, v)),
        alignment_steps=int(alignment_steps),
        alignment_lr=float(pose.test_alignment_lr) if pose is not None else 2e-3)
    return {"step": run.step, "num_gaussians": run.num_gaussians, "test": test}


def evaluate_run(run: LoadedRun, *, mesh: Optional[PathLike] = None, tau: float = PROTOCOL_TAU,
                 n_points: int = PROTOCOL_POINTS, max_depth: Optional[float] = PROTOCOL_MAX_DEPTH,
                 write: bool = True) -> Dict[str, Any]:
    """PSNR/SSIM on the test views and, where the scene has ground truth and a mesh exists (mesh, or
    <run>/exports/mesh_levelset.ply, or mesh_tsdf.ply), surface metrics under the scoring protocol
    (``max_depth`` None: GT surface at any depth). Writes <run>/eval.json."""
    if not tau > 0:
        raise RunInputError(f"tau={tau}: expected a positive distance in metres", param="tau")
    if max_depth is not None and not max_depth > 0:
        raise RunInputError(f"max_depth={max_depth}: expected a positive distance in metres", param="max_depth")
    if mesh is not None and not Path(mesh).is_file():
        raise RunInputError(f"mesh file {mesh} does not exist (expected a .ply written by omnire-mesh)")
    image = evaluate_run_images(run)
    report: Dict[str, Any] = {"run": str(run.run_dir), "checkpoint": str(run.checkpoint), "step": run.step,
                              "num_gaussians": int(image["num_gaussians"]), "test": image["test"], "surface": None}
    if run.dataset().gt_mesh_path is None:
        report["surface_note"] = "the scene has no ground-truth mesh"
    else:
        mesh_path = Path(mesh) if mesh is not None else find_run_mesh(run)
        if mesh_path is None:
            report["surface_note"] = (f"no mesh in {run.run_dir / 'exports'}; run omnire-mesh first "
                                      "or pass --mesh")
        else:
            m = surface_metrics(run, mesh_path, tau=tau, n_points=n_points, max_depth=max_depth)
            m["mesh"] = str(mesh_path)
            m["region"] = "seen by the training cameras (GT depth" + (
                f" <= {max_depth:g} m)" if max_depth is not None else ")")
            m["protocol"] = protocol_text(max_depth, tau, n_points)
            m["distances"] = "exact point-to-mesh (open3d), samples restricted to the region"
            report["surface"] = m
    if write:
        path = atomic_write(run.run_dir / "eval.json", lambda f: f.write(json.dumps(report, indent=2).encode("utf-8")))
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
                 ("protocol", s.get("protocol", s["region"])),
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
