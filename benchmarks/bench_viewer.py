"""Does an attached viewer slow training when nobody is connected? Prints a table.

    .venv/bin/python -m benchmarks.bench_viewer [--blocks 6] [--steps 10] [--scene-overrides ...]

One SingleTrainer on the default scene (quick config, 2 threads). Blocks of `train()` steps
alternate between the trainer without and with a live ViewerServer attached with no browser
connected (the viewer's step gate and step callback), so both see the same stage and Gaussian
count; the table gives the median seconds per step of each and the viewer's own per-step cost
measured alone (median of 5 runs of 20,000 passes through the gate and the callback).
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=6, help="blocks per arm (alternating)")
    ap.add_argument("--steps", type=int, default=10, help="training steps per block")
    ap.add_argument("overrides", nargs="*", help="hydra overrides of omnire_sugar_quick")
    args = ap.parse_args(argv)

    import torch
    from hydra import compose, initialize_config_dir

    from models.trainers import configure_process
    from models.trainers.single import SingleTrainer
    from models.viewer.server import ViewerServer

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("omnire_sugar_quick", overrides=["log.progress=false", "num_threads=2", *args.overrides])
    configure_process(cfg)  # num_threads=2 and the seeds, as omnire-train sets them
    trainer = SingleTrainer(cfg, output_dir=None)
    trainer.train(num_steps=5)  # warm-up
    bare = (list(trainer._step_callbacks), list(trainer._step_locks))
    viewer = ViewerServer(trainer, host="127.0.0.1", port=free_port(), live=True)
    attached = (list(trainer._step_callbacks), list(trainer._step_locks))
    times = {"bare": [], "viewer attached, nobody connected": []}
    for b in range(2 * args.blocks):
        arm = "bare" if b % 2 == 0 else "viewer attached, nobody connected"
        trainer._step_callbacks, trainer._step_locks = [list(x) for x in (bare if arm == "bare" else attached)]
        trainer.add_step_callback(lambda _, info, arm=arm: times[arm].append(info.seconds))
        trainer.train(num_steps=args.steps)

    # the viewer's part alone: its gate (pause check + lock) and its callback with no client
    gate, callback = attached[1][-1], attached[0][-1]
    from models.trainers.base import StepInfo
    info = StepInfo(trainer.step, trainer.current_stage, trainer.stage_step, {}, 0.0)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20_000):
            with gate:
                pass
            callback(trainer, info)
        runs.append((time.perf_counter() - t0) / 20_000)
    viewer.stop()

    print(f"default scene, quick config, steps {5}..{trainer.step} (stage {trainer.current_stage}), "
          f"{trainer.num_gaussians:,} Gaussians at the end, 2 threads, {args.blocks} alternating blocks of {args.steps} steps")
    print("| arm | median s/step | p90 s/step | steps |")
    print("|---|---|---|---|")
    for arm, ts in times.items():
        ts = sorted(ts)
        print(f"| {arm} | {statistics.median(ts):.4f} | {ts[int(0.9 * (len(ts) - 1))]:.4f} | {len(ts)} |")
    print(f"| the viewer alone (gate + callback, no client) | {statistics.median(runs) * 1e6:.2f} µs/step | | 5 x 20,000 |")


if __name__ == "__main__":
    main()
