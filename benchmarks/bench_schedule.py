"""Cost of StageSchedule.step() over the seed's 15,000 steps, and of to_state()/from_state().

    .venv/bin/python -m benchmarks.bench_schedule [--repeats 7]

Prints a table: median over repeats (each repeat times all 15,000 step() calls, or 10,000
state round trips). Reference measured side by side: a linear scan over the stages (what
bisection replaces) and an empty Python call (the floor of any method call).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

from models.trainers.base import StageSchedule, StageSpec  # noqa: E402

SEED = [StageSpec("pretrain", 7000), StageSpec("entropy", 2000), StageSpec("sugar", 6000)]


def linear_scan(stages, global_step):
    start = 0
    for s in stages:
        if global_step < start + s.steps:
            return s.name, global_step - start
        start += s.steps
    raise ValueError(global_step)


def time_per_call(fn, n, repeats):
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) / n)
    return statistics.median(runs), min(runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    sched = StageSchedule(SEED)
    total = sched.total_steps
    steps = range(total)

    def run_step():
        step = sched.step
        for s in steps:
            step(s)

    def run_scan():
        for s in steps:
            linear_scan(SEED, s)

    def noop(_):
        return None

    def run_noop():
        for s in steps:
            noop(s)

    n_state = 10000
    sched.step(8000)

    def run_to_state():
        for _ in range(n_state):
            sched.to_state()

    state = sched.to_state()

    def run_from_state():
        for _ in range(n_state):
            StageSchedule.from_state(state)

    rows = [
        ("StageSchedule.step (bisection)", time_per_call(run_step, total, args.repeats), "target <= 2 us"),
        ("reference: linear scan over stages", time_per_call(run_scan, total, args.repeats), ""),
        ("reference: empty Python call", time_per_call(run_noop, total, args.repeats), ""),
        ("StageSchedule.to_state", time_per_call(run_to_state, n_state, args.repeats), ""),
        ("StageSchedule.from_state", time_per_call(run_from_state, n_state, args.repeats), "validates + rebuilds"),
    ]
    print(f"StageSchedule benchmark: {sched.describe()}; median of {args.repeats} repeats "
          f"(python {sys.version.split()[0]})")
    print(f"{'operation':<38} {'median us/call':>15} {'best us/call':>13}  note")
    for name, (med, best), note in rows:
        print(f"{name:<38} {med * 1e6:>15.3f} {best * 1e6:>13.3f}  {note}")
    return rows


if __name__ == "__main__":
    main()
