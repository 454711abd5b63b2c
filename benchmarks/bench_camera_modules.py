"""What each camera model adds to a training step, forward and backward, at the training image size:
the compiled / host-float path a CPU run takes against the PyTorch composition (the path of other
devices, and what a CPU ran before), side by side in one process, median of several rounds.

    .venv/bin/python -m benchmarks.bench_camera_modules [--width 160 --height 96] [--calls 200] [--rounds 5]
        [--json PATH]

- pose refinement: one frame's corrected camera_to_world and its rigid inverse (the viewmat the
  projection reads), backward to the deltas (models.camera_models.PoseRefinement.refine; reference:
  so3_exp and compose_rigid under autograd);
- sky: the cube map (64 texels a side) through every pixel (EnvironmentMap.render; reference:
  render_torch, grid_sample);
- appearance: a camera's 3x4 with an image's gain (AffineAppearance, per=camera+image; reference: the
  same matrix as multiply-adds over the channels).

These are the modules' own costs; a whole step's share depends on the Gaussians (docs/results.md,
"Real cameras"). Run one benchmark at a time: two CPU-heavy processes on two cores slow each other.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)


def _time(fn, calls: int, rounds: int) -> float:
    for _ in range(10):
        fn()
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls * 1e3)
    return statistics.median(runs)


def measure(width: int = 160, height: int = 96, calls: int = 200, rounds: int = 5, threads: int = 2) -> list:
    import torch
    from models.camera_models import AffineAppearance, EnvironmentMap, PoseRefinement, compose_rigid
    from models.cameras import Camera, rigid_inverse
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[0.7 * width, 0.0, width / 2], [0.0, 0.7 * width, height / 2], [0.0, 0.0, 1.0]])
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([1.0, 2.0, 0.5])

    pose = PoseRefinement(list(range(21)), torch.randn(21, 3, generator=g), "frame")
    pose.set_deltas(torch.randn(21, 6, generator=g) * 1e-3)

    def pose_fast():
        rigid_inverse(pose.refine(c2w, 7)).sum().backward()

    def pose_ref():
        rigid_inverse(compose_rigid(pose.delta(7), c2w)).sum().backward()

    sky = EnvironmentMap(64)
    cam = Camera(c2w, K, width, height)
    weights = torch.rand(height, width, 3, generator=g)

    def sky_fast():
        (sky.render(cam) * weights).sum().backward()

    def sky_ref():
        (sky.render_torch(cam) * weights).sum().backward()

    app = AffineAppearance(["0", "1", "2"], 63, "camera+image")
    with torch.no_grad():
        app.affine.copy_(torch.randn(2, 3, 4, generator=g) * 0.05)
    rgb = torch.rand(height, width, 3, generator=g).requires_grad_()

    def app_fast():
        (app(rgb, "1", 5) * weights).sum().backward()

    def app_ref():
        m = app.transform("1", 5)
        out = ((rgb[..., 0:1] * m[:, 0] + rgb[..., 1:2] * m[:, 1]) + rgb[..., 2:3] * m[:, 2]) + m[:, 3]
        (out * weights).sum().backward()

    rows = []
    for name, fast, ref in (("pose refinement", pose_fast, pose_ref), ("sky (envmap, 64)", sky_fast, sky_ref),
                            ("appearance (camera+image)", app_fast, app_ref)):
        # interleaved: reference, shipped, reference, shipped ... so both see the same machine
        r, f = [], []
        for _ in range(rounds):
            r.append(_time(ref, calls, 1))
            f.append(_time(fast, calls, 1))
        rows.append({"module": name, "reference_ms": statistics.median(r), "shipped_ms": statistics.median(f),
                     "reference_runs": r, "shipped_runs": f})
    return rows


def format_rows(rows: list, width: int, height: int, threads: int) -> str:
    lines = [f"camera models, forward + backward per step at {width}x{height}, {threads} threads "
             "(median of rounds, ms)",
             f"{'module':<28}{'PyTorch':>10}{'shipped':>10}{'ratio':>8}"]
    for r in rows:
        lines.append(f"{r['module']:<28}{r['reference_ms']:>10.3f}{r['shipped_ms']:>10.3f}"
                     f"{r['shipped_ms'] / r['reference_ms']:>8.2f}")
    total_r = sum(r["reference_ms"] for r in rows)
    total_f = sum(r["shipped_ms"] for r in rows)
    lines.append(f"{'all three':<28}{total_r:>10.3f}{total_f:>10.3f}{total_f / total_r:>8.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--calls", type=int, default=200, help="calls per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if min(a.width, a.height, a.calls, a.rounds, a.threads) < 1:
        print("error: --width, --height, --calls, --rounds and --threads must be >= 1", file=sys.stderr)
        return 2
    rows = measure(a.width, a.height, a.calls, a.rounds, a.threads)
    print(format_rows(rows, a.width, a.height, a.threads))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"width": a.width, "height": a.height, "threads": a.threads, "rows": rows},
                                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
