"""A street of real size: load time and peak host memory (RSS), and seconds per step, Gaussian
count and peak RSS in each stage, on the `scene=synthetic_large` preset (3 cameras x 200 frames at
960x640; generated on first use, ~10 min).

    .venv/bin/python -m benchmarks.bench_scale [--runs 3] [--steps 100] [--config-name omnire_sugar_quick]
    .venv/bin/python -m benchmarks.bench_scale --skip-train 'scene.cameras=[0,1,2,3,4]'   # five cameras

Every measurement runs in a fresh process (peak RSS is the process's own, `ru_maxrss`):
1. load, `--runs` times: the scene as the trainer holds it (uint8 pixels, the LiDAR depth as its
   filled pixels, the ground-truth depth read from its file when asked for), and, side by side in
   the same runs, the reference: the same load with every view's float maps made and kept, as a
   float32 layout holds them (image, LiDAR depth, ground-truth depth: ~13 MB a 960x640 view);
2. train, once: a SingleTrainer on the preset for `--steps` steps of each stage (the config's
   densification, so the pretrain steps grow the model as a run does), no checkpoints and no final
   evaluation: median and p90 seconds per step, Gaussians at each stage's end, peak RSS.
Prints a table; --json writes the figures.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

RSS_TARGET_GB = 4.0   # loading the 3 x 200 x 960x640 preset (issue: host RSS <= 4 GB)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9   # Linux: kilobytes


def proc_status_gb(key: str) -> float | None:
    """VmRSS (now) or VmHWM (peak since the last reset) from /proc/self/status, in GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Start a new peak (VmHWM) from the current RSS: Linux's /proc/self/clear_refs, value 5."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def tensor_bytes(view) -> int:
    n = 0
    for value in vars(view).values():
        if hasattr(value, "nbytes"):
            n += int(value.nbytes)
        elif hasattr(value, "index") and hasattr(value, "z"):   # SparseDepth
            n += int(value.index.nbytes + value.z.nbytes)
    return n


def _scene_cfg(option: str, overrides):
    from scenes.config import compose_scene_config
    return compose_scene_config(option, [o for o in overrides if o.startswith("scene.")])


def worker_load(args) -> dict:
    from scenes.config import load_scene
    cfg = _scene_cfg(args.scene, args.overrides)
    t0 = time.perf_counter()
    scene = load_scene(cfg)
    out = {"load_s": time.perf_counter() - t0, "views": len(scene.views),
           "size": f"{scene.views[0].width}x{scene.views[0].height}", "cameras": len(scene.cameras),
           "frames": len(scene.frames), "lidar_points": int(scene.lidar.points.shape[0]),
           "view_mb": sum(tensor_bytes(v) for v in scene.views) / 1e6}
    if args.float_layout:   # the reference: every view's float maps made and kept
        held = []
        for v in scene.views:
            gt = v.gt_depth
            held.append((v.image, v.lidar_depth, gt))
        out["view_mb"] = sum(sum(t.nbytes for t in h if t is not None) + v.sky_mask.nbytes + v.dynamic_mask.nbytes
                             for h, v in zip(held, scene.views)) / 1e6
    out["peak_rss_gb"] = peak_rss_gb()
    return out


def worker_train(args) -> dict:
    import torch
    from hydra import compose, initialize_config_dir
    from models.trainers import configure_process
    from models.trainers.single import SingleTrainer
    s = args.steps
    schedule = f"optim.stage_schedule=[{{name:pretrain,steps:{s}}},{{name:entropy,steps:{s}}},{{name:sugar,steps:{s + 1}}}]"
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(args.config_name, overrides=[f"scene={args.scene}", f"output_dir={tempfile.mkdtemp()}",
                                                   "log.progress=false",
                                                   "log.tensorboard=false", "log.snapshot_every=0",
                                                   "checkpoint.every=0", schedule, *args.overrides])
    configure_process(cfg)
    t0 = time.perf_counter()
    tr = SingleTrainer(cfg, output_dir=None)
    setup_s = time.perf_counter() - t0
    setup_rss = peak_rss_gb()
    after_setup = proc_status_gb("VmRSS")
    reset = reset_peak_rss()   # the stages' peaks then leave out the load's and the setup's transients
    per_stage, counts, rss = {}, {}, {}

    def on_step(trainer, info):
        per_stage.setdefault(info.stage, []).append(info.seconds)
        counts[info.stage] = trainer.num_gaussians
        rss[info.stage] = (proc_status_gb("VmHWM") if reset else None) or peak_rss_gb()

    tr.add_step_callback(on_step)
    start = tr.num_gaussians
    tr.train(num_steps=3 * s)
    stages = {}
    for name, ts in per_stage.items():
        ts = sorted(ts)
        stages[name] = {"steps": len(ts), "median_s": statistics.median(ts), "p90_s": ts[int(0.9 * (len(ts) - 1))],
                        "gaussians_at_end": counts[name], "peak_rss_gb": rss[name]}
    return {"config": args.config_name, "setup_s": setup_s, "setup_peak_rss_gb": setup_rss,
            "rss_after_setup_gb": after_setup, "stage_peaks_since_setup": reset,
            "initial_gaussians": start, "threads": torch.get_num_threads(), "stages": stages}


def run_worker(kind: str, args, extra=()) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, "-m", "benchmarks.bench_scale", "--worker", kind, "--out", f.name,
               "--scene", args.scene, "--steps", str(args.steps), "--config-name", args.config_name, *extra,
               *args.overrides]
        subprocess.run(cmd, cwd=REPO, check=True)
        return json.loads(Path(f.name).read_text())


def measure_loads(args, folder: Path, prepare_s: float) -> dict:
    loads = {"compact (as trained)": [], "reference: float32 maps kept": []}
    for _ in range(args.runs):   # interleaved: the two layouts see the same disk cache state
        loads["compact (as trained)"].append(run_worker("load", args))
        loads["reference: float32 maps kept"].append(run_worker("load", args, ["--float-layout"]))
    first = loads["compact (as trained)"][0]
    print(f"scene {args.scene} ({folder.name}): {first['cameras']} cameras x {first['frames']} frames at "
          f"{first['size']}, {first['views']} views, {first['lidar_points']} LiDAR points; prepared in "
          f"{prepare_s:.1f} s; median of {args.runs} loads, each in a fresh process")
    print(f"{'layout':<32}{'load s':>9}{'views MB':>10}{'peak RSS GB':>13}")
    table = {}
    for name, rows in loads.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("load_s", "view_mb", "peak_rss_gb")}
        table[name] = med
        print(f"{name:<32}{med['load_s']:>9.1f}{med['view_mb']:>10.0f}{med['peak_rss_gb']:>13.2f}")
    rss = table["compact (as trained)"]["peak_rss_gb"]
    print(f"target: peak RSS <= {RSS_TARGET_GB:.0f} GB loading the preset -> {'met' if rss <= RSS_TARGET_GB else 'MISSED'}")
    return {"load": table, "load_runs": loads, "scene_info": first}


def measure_training(args) -> dict:
    train = run_worker("train", args)
    print(f"\ntraining ({train['config']}, {train['threads']} threads, {args.steps} steps of each stage, no "
          f"checkpoints; {' '.join(args.overrides) or 'no overrides'}): setup {train['setup_s']:.1f} s (peak RSS "
          f"{train['setup_peak_rss_gb']:.2f} GB, {train['rss_after_setup_gb'] or float('nan'):.2f} GB after it), "
          f"{train['initial_gaussians']} initial Gaussians; the stages' peak RSS is "
          f"{'since the setup' if train['stage_peaks_since_setup'] else 'the process peak'}")
    print(f"{'stage':<10}{'steps':>7}{'median s/step':>15}{'p90 s/step':>12}{'Gaussians at end':>18}"
          f"{'peak RSS GB':>13}")
    for name, st in train["stages"].items():
        print(f"{name:<10}{st['steps']:>7}{st['median_s']:>15.3f}{st['p90_s']:>12.3f}{st['gaussians_at_end']:>18}"
              f"{st['peak_rss_gb']:>13.2f}")
    return train


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="synthetic_large", help="the scene config option (configs/scene/)")
    ap.add_argument("--runs", type=int, default=3, help="load measurements of each layout")
    ap.add_argument("--steps", type=int, default=100, help="training steps in each stage")
    ap.add_argument("--config-name", default="omnire_sugar_quick")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-load", action="store_true", help="only the training measurement")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", choices=("load", "train"), help=argparse.SUPPRESS)
    ap.add_argument("--float-layout", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. 'scene.cameras=[0,1,2,3,4]'")
    args = ap.parse_args(argv)
    if args.worker:
        result = worker_load(args) if args.worker == "load" else worker_train(args)
        args.out.write_text(json.dumps(result, indent=1))
        return result

    from scenes.config import prepare_scene
    t0 = time.perf_counter()
    folder = prepare_scene(_scene_cfg(args.scene, args.overrides))   # generate once, outside the timings
    prepare_s = time.perf_counter() - t0
    result = {"scene": args.scene, "folder": folder.name, "overrides": args.overrides}
    if not args.skip_load:
        result.update(measure_loads(args, folder, prepare_s))
    if not args.skip_train:
        result["train"] = measure_training(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
