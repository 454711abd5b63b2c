"""Training speed on the default synthetic scene (CPU): seconds per step in each stage, the cost
of the stage machinery in a pretrain step, checkpoint save / resume time, and optionally the wall
time of `make demo`.

    .venv/bin/python -m benchmarks.bench_train [--config-name omnire_sugar_quick] [--reps 7] [--demo]

1. trains the configured schedule once, timing every step; prints the median per stage;
2. on the trained model, interleaves `reps` rounds of: a SingleTrainer pretrain step (stage
   machinery, hooks, colour-only render) and a bare 3DGS step written here without any stage or
   SuGaR code (the reference: same render, loss, backward, optimizer); prints both medians;
3. checkpoint save (atomic write) and resume (a new trainer loading it) times, median of `reps`;
4. with --demo: the wall time of `.venv/bin/omnire-demo` in a fresh process.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from models.losses import photometric_loss, sky_opacity_loss  # noqa: E402
from models.rendering.render import render_gaussians  # noqa: E402
from models.trainers import configure_process  # noqa: E402
from models.trainers.single import SingleTrainer  # noqa: E402


def bare_step(tr: SingleTrainer, view, step: int) -> None:
    """Plain 3DGS with no stage machinery: render colour, 0.8 L1 + 0.2 (1 - SSIM) and the configured
    sky-opacity loss, backward, Adam, the densification strategy's bookkeeping."""
    gs = tr.model.get_gaussians()
    rgb, alpha, _, info = render_gaussians(gs, view.camera, background=torch.sigmoid(tr.background),
                                           sh_degree=tr.model.sh_degree, render_mode="RGB",
                                           backend=str(tr.cfg.render.backend))
    info["means2d"].retain_grad()
    loss, _ = photometric_loss(rgb, view.image, mask=~view.dynamic_mask)
    loss = loss + float(tr.cfg.loss.sky_opacity) * sky_opacity_loss(alpha, view.sky_mask)
    loss.backward()
    for opt in tr.optimizers["Background"].values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    strategy = tr.strategies["Background"]
    strategy.growth.step_post_backward(tr.model.params, tr.optimizers["Background"], strategy.state, step, info)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-name", default="omnire_sugar_quick")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps-per-rep", type=int, default=5)
    ap.add_argument("--demo", action="store_true", help="also time `.venv/bin/omnire-demo` end to end")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(args.config_name, overrides=[f"output_dir={tmp / 'run'}", "log.progress=false",
                                                   "log.tensorboard=false", "log.snapshot_every=0",
                                                   "checkpoint.every=0", *args.overrides])
    t0 = time.perf_counter()
    configure_process(cfg)  # the config's threads and seeds, as omnire-train sets them
    tr = SingleTrainer(cfg, output_dir=cfg.output_dir)
    setup_s = time.perf_counter() - t0
    per_stage = defaultdict(list)
    tr.add_step_callback(lambda _, info: per_stage[info.stage].append(info.seconds))
    t0 = time.perf_counter()
    tr.train()
    train_s = time.perf_counter() - t0
    step_fn = tr.train_step

    print(f"config {args.config_name}: {tr.stage_schedule.describe()}; setup {setup_s:.1f} s; "
          f"training {train_s:.1f} s (incl. final evaluation and export); torch threads {torch.get_num_threads()}")
    print(f"\n{'stage':<10} {'steps':>6} {'median s/step':>14} {'p90 s/step':>11} {'stage total s':>14}")
    for name in tr.stage_schedule.names:
        ts = sorted(per_stage[name])
        print(f"{name:<10} {len(ts):>6} {statistics.median(ts):>14.4f} {ts[int(0.9 * (len(ts) - 1))]:>11.4f} "
              f"{sum(ts):>14.1f}")

    # the stage machinery's cost in a pretrain step, against a bare 3DGS step on the same model
    tr.step, tr.current_stage = 1, "pretrain"
    tr._active_stage = 0
    views = tr._views
    ours, bare = [], []
    for rep in range(args.reps + 1):
        t = time.perf_counter()
        for i in range(args.steps_per_rep):
            tr.step = 1 + i  # inside pretrain, before densification starts: same work every round
            tr.update_stage()
            step_fn()
        a = (time.perf_counter() - t) / args.steps_per_rep
        t = time.perf_counter()
        for i in range(args.steps_per_rep):
            bare_step(tr, views[tr.sampler.next()], 1 + i)
        b = (time.perf_counter() - t) / args.steps_per_rep
        if rep:  # the first round warms up
            ours.append(a)
            bare.append(b)
    print(f"\npretrain step on the trained model ({tr.num_gaussians} Gaussians), median of {args.reps} rounds of "
          f"{args.steps_per_rep} steps, interleaved:")
    print(f"  SingleTrainer.train_step (stages, hooks, RGB only) {statistics.median(ours):.4f} s")
    print(f"  reference: bare 3DGS step, no stage/SuGaR code     {statistics.median(bare):.4f} s")

    save, load = [], []
    for _ in range(args.reps):
        t = time.perf_counter()
        path = tr.save_checkpoint()
        save.append(time.perf_counter() - t)
        t = time.perf_counter()
        SingleTrainer(cfg, output_dir=None, resume=path)
        load.append(time.perf_counter() - t)
    print(f"\ncheckpoint {path.stat().st_size / 1e6:.1f} MB: save {statistics.median(save):.3f} s, "
          f"resume (new trainer incl. scene load + checkpoint) {statistics.median(load):.3f} s "
          f"(median of {args.reps})")

    if args.demo:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "omnire_cli.demo", "--out", str(tmp / "demo"), "log.progress=false"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        print(f"\n`.venv/bin/omnire-demo` wall time: {time.perf_counter() - t:.1f} s (one run)")


if __name__ == "__main__":
    main()
