"""The camera-model comparison: streets with imperfect cameras (pose noise, exposure, a structured
sky), trained with and without the module meant for each (models.camera_models), scored the same way
(the library behind `python -m benchmarks.bench_cameras`).

Each case trains the quick staged schedule in-process (models.quality.training), then reports test
PSNR (on every pixel, and on the sky's), the training poses' error against the generator's truth before
and after refinement, level-set and TSDF Chamfer / F@5cm within 40 m, floaters in front of the sky
(Gaussians on the training cameras' sky pixels; the test views' alpha there) and seconds per step. Every run is evaluated alike: test poses
aligned to their images (cameras.pose.test_alignment_steps) in every run of a street with pose noise,
and in none of the others.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from models.mesh.run_io import (PROTOCOL_MAX_DEPTH, RunInputError, default_mesh_path, evaluate_run_images,
                                extract_run_mesh, load_run, save_mesh, surface_metrics)
from models.quality.training import train_bench_run
from models.quality.variants import QUICK_STEPS, bench_schedules

# the imperfections (scene keys of scenes/synthetic.py) at the sizes
POSE_NOISE = ("scene.pose_noise_m=0.1", "scene.pose_noise_deg=0.5")
EXPOSURE = ("scene.exposure_gain=0.3", "scene.white_balance=0.1")
EXPOSURE_FRAME = EXPOSURE + ("scene.exposure_frame_gain=0.15",)   # plus auto-exposure per frame
POSE_ON = ("cameras.pose.enabled=true",)
APPEARANCE_ON = ("cameras.appearance.enabled=true",)
SKY_ON = ("cameras.sky.model=envmap",)
# Adam steps of test-pose alignment (lr 2e-3) on a street with pose noise: a test frame starts from its
# nearest training frame's correction, ~17 cm and 0.4° from its own pose; 100 steps left several views
# unaligned (seed schedule, refined run: 27.04 dB at 100 steps, 29.43 at 300; docs/results.md, "Real cameras")
TEST_ALIGNMENT_STEPS = 300

# bench_camera_step's variants: camera model -> the key that turns it on; variant -> the models it keeps
CAMERA_MODULES = {"pose": POSE_ON[0], "appearance": APPEARANCE_ON[0], "sky": SKY_ON[0]}
MODULE_VARIANTS: Dict[str, Tuple[str, ...]] = {"none": (), "pose": ("pose",), "appearance": ("appearance",),
                                               "sky": ("sky",), "all": ("pose", "appearance", "sky")}


# camera model -> (its checkpoint key, its config section, the key and value that turn it off)
_MODEL_STATE = {"sky": ("sky", "sky", "model", "none"), "appearance": ("appearance", "appearance", "enabled", False),
                "pose": ("pose_refinement", "pose", "enabled", False)}


# camera model -> its optimizers in a checkpoint's camera_optimizers, where not the one of its own name
_OPTIMIZERS = {"pose": ("pose", "pose_rotation")}


def keep_camera_models(state: Dict[str, Any], keep: Sequence[str]) -> Dict[str, Any]:
    """A copy of a checkpoint trained with every camera model, with the state and optimizer of those not
    in `keep` taken out and its config saying so (what a run without them would have saved); the
    Gaussians, their optimizers and the step are kept."""
    out = copy.deepcopy(state)
    for name, (state_key, section, off_key, off_value) in _MODEL_STATE.items():
        if name not in keep:
            out[state_key] = None
            out["config"]["cameras"][section][off_key] = off_value
            for optimizer in _OPTIMIZERS.get(name, (name,)):
                out["camera_optimizers"].pop(optimizer, None)
    return out


# name -> (street, what the run turns on)
CASES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "clean": ((), ()),
    "clean+all": ((), POSE_ON + APPEARANCE_ON + SKY_ON),
    "clean+sky": ((), SKY_ON),
    "pose_noise": (POSE_NOISE, ()),
    "pose_noise+refine": (POSE_NOISE, POSE_ON),
    "exposure": (EXPOSURE, ()),
    "exposure+appearance": (EXPOSURE, APPEARANCE_ON),
    "exposure_frame": (EXPOSURE_FRAME, ()),
    "exposure_frame+appearance": (EXPOSURE_FRAME, APPEARANCE_ON + ("cameras.appearance.per=camera+image",)),
}


@torch.no_grad()
def sky_floaters(scene, dataset, min_opacity: float = 0.1) -> Dict[str, Any]:
    """Floaters in front of the sky: the background model's Gaussians (opacity >= min_opacity) whose
    centre lies in front of a training camera on a pixel its sky mask marks (nothing but sky is
    there), and the mean rendered alpha over the test views' sky pixels (0: the sky is clear)."""
    m = scene.model.params
    means = m["means"].detach()
    keep = torch.sigmoid(m["opacities"].detach()).reshape(-1) >= min_opacity
    hit = torch.zeros(means.shape[0], dtype=torch.bool)
    for view in dataset.train_views:
        if view.sky_mask is None or not bool(view.sky_mask.any()):
            continue
        uv, z = view.camera.project(means, min_depth=1e-3)
        inside = view.camera.inside(uv, z, min_depth=0.1)
        cols = uv[:, 0].clamp(0, view.width - 1).long()
        rows = uv[:, 1].clamp(0, view.height - 1).long()
        hit |= inside & view.sky_mask[rows, cols]
    alphas = []
    for view in dataset.test_views:
        if view.sky_mask is not None and bool(view.sky_mask.any()):
            alphas.append(float(scene.render(view.camera, view.frame_idx).alpha[view.sky_mask].mean()))
    return {"gaussians": int((hit & keep).sum()), "sky_alpha": float(np.mean(alphas)) if alphas else None,
            "min_opacity": min_opacity}


@torch.no_grad()
def sky_psnr(run, dataset) -> Optional[float]:
    """PSNR on the sky pixels of the test views (each rendered as evaluation renders it, without alignment)."""
    from models.losses import psnr
    num, den = 0.0, 0
    errs = []
    for view in dataset.test_views:
        if view.sky_mask is None or not bool(view.sky_mask.any()):
            continue
        out = run.scene.render(view.camera, view.frame_idx)
        rgb = run.scene.camera_colours(out.rgb, view).clamp(0, 1)
        errs.append(((rgb - view.image) ** 2)[view.sky_mask].mean().item())
    if not errs:
        return None
    return float(-10.0 * np.log10(max(np.mean(errs), 1e-12)))


def appearance_error(run) -> Optional[Dict[str, float]]:
    """How far each camera's colour multiplier (relative to the reference camera, on mid grey) is from
    the generator's truth: mean |error| in per cent over cameras and channels, before (identity) and
    after (the learned transform). None without recorded exposure."""
    from scenes.imperfections import load_imperfections
    dataset = run.dataset()
    truth = load_imperfections(dataset.root)
    if truth is None or not truth.camera_gain:
        return None
    cams = list(dict.fromkeys(str(v.cam_name) for v in dataset.train_views))
    ref = np.asarray(truth.camera_gain[cams[0]]) * np.asarray(truth.white_balance[cams[0]])
    before, after = [], []
    for cam in cams[1:]:
        want = np.asarray(truth.camera_gain[cam]) * np.asarray(truth.white_balance[cam]) / ref
        before.append(np.abs(want - 1.0))
        app = run.scene.appearance
        if app is not None:
            m = app.matrix(cam).detach().cpu().double().numpy()
            got = (m[:, :3].sum(1) * 0.5 + m[:, 3]) / 0.5
            after.append(np.abs(want - got))
    out = {"before_pct": float(100 * np.mean(before))}
    if after:
        out["after_pct"] = float(100 * np.mean(after))
    return out


def pose_error_table(run, clean_views: Dict[Tuple[int, str], torch.Tensor]) -> Dict[str, Any]:
    """The training poses' error against the clean street's (the truth) before and after refinement."""
    from models.camera_models import pose_errors
    dataset = run.dataset()
    truth = [clean_views[(int(v.frame_idx), str(v.cam_name))] for v in dataset.train_views]
    before = pose_errors([v.camera_to_world for v in dataset.train_views], truth)
    after = pose_errors([v.camera_to_world for v in run.cameras.train_views], truth)
    # the same after a similarity fit of the camera centres: the error the gauge does not explain
    before_aligned = pose_errors([v.camera_to_world for v in dataset.train_views], truth, align=True)
    after_aligned = pose_errors([v.camera_to_world for v in run.cameras.train_views], truth, align=True)
    return {"before": before, "after": after, "before_aligned": before_aligned, "after_aligned": after_aligned}


def run_camera_case(name: str, out: Path, *, steps: int = QUICK_STEPS, config_name: str = "omnire_sugar_quick",
                    overrides: Sequence[str] = (), reuse: bool = False, tau: float = 0.05,
                    max_depth: Optional[float] = PROTOCOL_MAX_DEPTH, methods: Sequence[str] = ("levelset", "tsdf"),
                    clean_poses: Optional[Dict[Tuple[int, str], torch.Tensor]] = None, log: Callable = print) -> Dict[str, Any]:
    """Train and score one case of CASES into out/<name>; returns its row (also out/<name>/bench_result.json)."""
    street, modules = CASES[name]
    noisy = any(o.startswith("scene.pose_noise") for o in street)
    alignment = (f"cameras.pose.test_alignment_steps={TEST_ALIGNMENT_STEPS if noisy else 0}",)
    schedule = bench_schedules(steps)["c_pretrain_entropy_sugar"]
    run_dir = out / name
    all_overrides = [*street, *modules, *alignment, *overrides]
    log(f"[{name}] {' '.join(all_overrides) or '(defaults)'}")
    timing = train_bench_run(config_name, run_dir, schedule, all_overrides, reuse=reuse)
    run = load_run(run_dir)
    dataset = run.dataset()
    t0 = time.perf_counter()
    image = evaluate_run_images(run, alignment_steps=TEST_ALIGNMENT_STEPS if noisy else 0)   # with --reuse too
    eval_s = time.perf_counter() - t0
    surfaces = {}
    for method in methods:
        try:
            mesh = extract_run_mesh(run, method=method, progress=False)
            path = save_mesh(mesh, default_mesh_path(run, method))
            surfaces[method] = surface_metrics(run, path, tau=tau, max_depth=max_depth)
        except RunInputError as exc:
            surfaces[method] = {"error": str(exc)}
    row = {"case": name, "config": config_name, "overrides": all_overrides, "schedule": schedule, "timing_s": timing,
           "seconds_per_step": sum(timing.values()) / steps, "psnr": image["test"]["psnr"],
           "ssim": image["test"]["ssim"], "evaluation": {k: image["test"][k] for k in ("appearance", "test_poses")},
           "eval_seconds": eval_s, "sky_psnr": sky_psnr(run, dataset),
           "floaters": sky_floaters(run.scene, dataset), "num_gaussians": run.num_gaussians,
           "surfaces": surfaces}
    if noisy and clean_poses is not None:
        row["pose_error"] = pose_error_table(run, clean_poses)
    if any(o.startswith("scene.exposure") for o in street):
        row["appearance_error"] = appearance_error(run)
    (run_dir / "bench_result.json").write_text(json.dumps(row, indent=2))
    return row


def clean_poses_of(config_name: str, overrides: Sequence[str]) -> Dict[Tuple[int, str], torch.Tensor]:
    """(frame, camera) -> camera_to_world of the street without pose noise: the truth of a noisy one
    (the generator renders from the true poses and writes the noisy ones; frame 0 is exact, so both
    load into the same world)."""
    from models.quality.variants import compose_config
    from scenes import load_scene
    cfg = compose_config(config_name, list(overrides))
    scene = load_scene(cfg.scene)
    return {(int(v.frame_idx), str(v.cam_name)): v.camera_to_world.clone()
            for v in list(scene.train_views) + list(scene.test_views)}


def run_camera_bench(out: Path, cases: Sequence[str], seeds: Sequence[int] = (0,), **kwargs) -> Dict[str, Dict[str, Any]]:
    """Every case once per training seed (`seed=`: the trainer's initialisation and sampling; the street
    is the same): out/seed<k>/<case>. Returns {case: {seed: row}}; also out/bench_cameras.json."""
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise RunInputError(f"--cases {','.join(unknown)}: expected some of {', '.join(CASES)}")
    overrides = list(kwargs.pop("overrides", ()))
    clean = clean_poses_of(kwargs.get("config_name", "omnire_sugar_quick"), overrides)
    results: Dict[str, Dict[str, Any]] = {}
    for seed in seeds:
        for name in cases:
            results.setdefault(name, {})[str(seed)] = run_camera_case(
                name, out / f"seed{seed}", clean_poses=clean, overrides=[*overrides, f"seed={seed}"], **kwargs)
    (out / "bench_cameras.json").write_text(json.dumps(results, indent=2))
    return results


def median_row(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The per-key median of several seeds' rows (numbers only; nested dicts key by key)."""
    def med(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        if isinstance(values[0], dict):
            return {k: med([v.get(k) for v in values]) for k in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return float(np.median(values))
        return values[0]
    keys = ("psnr", "sky_psnr", "seconds_per_step", "num_gaussians", "floaters", "surfaces", "pose_error",
            "appearance_error")
    return {k: med([r.get(k) for r in rows]) for k in keys}


def format_camera_bench(results: Dict[str, Dict[str, Any]], tau: float = 0.05) -> str:
    """One row per case: the median over its seeds."""
    head = ["case", "PSNR", "sky PSNR", "pose err before (cm / deg)", "after (cm / deg)",
            "aligned before / after (cm / deg)", "level set Chamfer",
            f"F@{tau:g}", "TSDF Chamfer", f"F@{tau:g}", "sky floaters / alpha", "colour err % before / after",
            "Gaussians", "s / step"]
    rows: List[List[str]] = []

    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)
    for name, by_seed in results.items():
        r = median_row(list(by_seed.values()))
        ae = r.get("appearance_error") or {}
        pe = r.get("pose_error") or {}
        b, a = pe.get("before") or {}, pe.get("after") or {}
        ba, aa = pe.get("before_aligned") or {}, pe.get("after_aligned") or {}
        ls, ts = r["surfaces"].get("levelset") or {}, r["surfaces"].get("tsdf") or {}
        rows.append([name, f(r["psnr"], "{:.2f}"), f(r["sky_psnr"], "{:.2f}"),
                     f"{f(b.get('translation_mean_m') and 100 * b['translation_mean_m'], '{:.1f}')} / "
                     f"{f(b.get('rotation_mean_deg'), '{:.2f}')}",
                     f"{f(a.get('translation_mean_m') and 100 * a['translation_mean_m'], '{:.1f}')} / "
                     f"{f(a.get('rotation_mean_deg'), '{:.2f}')}",
                     f"{f(ba.get('translation_mean_m') and 100 * ba['translation_mean_m'], '{:.1f}')} / "
                     f"{f(ba.get('rotation_mean_deg'), '{:.2f}')} -> "
                     f"{f(aa.get('translation_mean_m') and 100 * aa['translation_mean_m'], '{:.1f}')} / "
                     f"{f(aa.get('rotation_mean_deg'), '{:.2f}')}",
                     f(ls.get("chamfer")), f(ls.get("fscore")), f(ts.get("chamfer")), f(ts.get("fscore")),
                     f"{f(r['floaters']['gaussians'], '{:.0f}')} / {f(r['floaters']['sky_alpha'])}",
                     f"{f(ae.get('before_pct'), '{:.1f}')} / {f(ae.get('after_pct'), '{:.1f}')}",
                     f(r["num_gaussians"], "{:.0f}"), f(r["seconds_per_step"], "{:.3f}")])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])
