"""Does an attached viewer slow training when nobody is connected? Prints a table.

    .venv/bin/python -m benchmarks.bench_viewer [--blocks 6] [--steps 10] [--scene-overrides ...]

One SingleTrainer on the default scene (quick config, 2 threads). Blocks of training steps
alternate between the bare train_step and the one wrapped by a live ViewerServer with no browser
connected (lock + callback), so both see the same stage and Gaussian count; the table gives the
median seconds per step of each and the wrapper's own cost measured alone (median of 5 runs of
20,000 calls of the callback path around a no-op step).
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
    bare = trainer.train_step
    viewer = ViewerServer(trainer, host="127.0.0.1", port=free_port(), live=True)
    wrapped = trainer.train_step
    trainer.train(num_steps=5)  # warm-up
    times = {"bare": [], "viewer attached, nobody connected": []}
    for b in range(2 * args.blocks):
        arm = "bare" if b % 2 == 0 else "viewer attached, nobody connected"
        trainer.train_step = bare if arm == "bare" else wrapped
        for _ in range(args.steps):
            trainer.update_stage()
            t0 = time.perf_counter()
            trainer.train_step()
            times[arm].append(time.perf_counter() - t0)
            trainer.step += 1

    # the wrapper alone: lock + on_step with no client, around a step that does nothing
    from models.viewer import adapter

    class Noop:
        step = 0
        _stop_requested = False

        def train_step(self):
            return {}
    noop = Noop()
    adapter.add_step_callback(noop, viewer.on_step, viewer.lock)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20_000):
            noop.train_step()
        runs.append((time.perf_counter() - t0) / 20_000)
    viewer.stop()

    print(f"default scene, quick config, steps {5}..{trainer.step} (stage {trainer.current_stage}), "
          f"{trainer.num_gaussians:,} Gaussians at the end, 2 threads, {args.blocks} alternating blocks of {args.steps} steps")
    print("| arm | median s/step | p90 s/step | steps |")
    print("|---|---|---|---|")
    for arm, ts in times.items():
        ts = sorted(ts)
        print(f"| {arm} | {statistics.median(ts):.4f} | {ts[int(0.9 * (len(ts) - 1))]:.4f} | {len(ts)} |")
    print(f"| the wrapper alone (lock + callback, no client) | {statistics.median(runs) * 1e6:.2f} µs/step | | 5 x 20,000 |")


if __name__ == "__main__":
    main()
