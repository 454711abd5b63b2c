"""Our training step against a peer CPU trainer's, side by side on the same street at a fixed
Gaussian count: OpenSplat (github.com/pierotofy/OpenSplat) in its CPU mode.

    .venv/bin/python -m benchmarks.bench_peer --opensplat-src PATH [--gaussians 15000] [--steps 200] [--runs 3]
    .venv/bin/python -m benchmarks.bench_peer --export DIR     # only the nerfstudio project both would train on

PATH is a checkout of an OpenSplat release (v1.1.4 measured) that you fetched yourself; nothing of it
is committed here. The script builds it once into --build-dir (default `outputs/peer/opensplat-build`)
against this venv's libtorch: it needs cmake, a C++17 compiler and Debian's
`libopencv-dev nlohmann-json3-dev libnanoflann-dev libcxxopts-dev` (OpenSplat's CMake would download
the last three; here they come from the system, `FETCHCONTENT_TRY_FIND_PACKAGE_MODE=ALWAYS`). Releases
written for libtorch 2.1-2.2 call `torch::linalg::vector_norm` / `inv`, which later libtorch headers
no longer declare; a forced-include header (written into the build folder) maps them to ATen's
`linalg_vector_norm` / `linalg_inv`, the same kernels.

What is compared (one process each, `--runs` times interleaved, 2 threads each as this project's
default `num_threads`):
- the same training views of the default street (PNG files written from the loader's pixels, a
  nerfstudio `transforms.json` with each view's pose and intrinsics) and the same initial points: the
  `--gaussians` LiDAR points this project's trainer starts from (`scene.max_init_points`), coloured
  as it colours them;
- no densification in either (OpenSplat: refinement and alpha reset past the last step; ours:
  `densify.refine_start_iter` past it), full resolution from the first step, SH degree 3 from step 3
  in both (`--sh-degree-interval 1` / `model.sh_degree_interval=1`), L1 + 0.2 (1 - SSIM), Adam;
- ours: a SingleTrainer's pretrain steps (the compiled CPU backend, the sky-opacity term, the learned
  background), `info.seconds` of each step;
- OpenSplat: the wall time between consecutive `Step k` lines it prints (one per step on a CPU),
  read as they come.
The first `--warmup` steps of each run are left out; each run gives its median, the table the median
of the runs'.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

SHIM = """#pragma once
#include <ATen/ATen.h>
namespace torch { namespace linalg {
inline at::Tensor vector_norm(const at::Tensor& x, const at::Scalar& ord, at::OptionalIntArrayRef dim,
                              bool keepdim, std::optional<at::ScalarType> dtype) {
    return at::linalg_vector_norm(x, ord, dim, keepdim, dtype);
}
inline at::Tensor inv(const at::Tensor& x) { return at::linalg_inv(x); }
}}
"""
DEBIAN = "libopencv-dev nlohmann-json3-dev libnanoflann-dev libcxxopts-dev"
THREADS = 2


class PeerError(RuntimeError):
    """The peer could not be built or run: what is missing or what it printed."""


def build_opensplat(src: Path, build: Path) -> Path:
    """The opensplat binary built from ``src`` in ``build`` (reused when newer than the sources)."""
    if not (src / "opensplat.cpp").is_file() or not (src / "CMakeLists.txt").is_file():
        raise PeerError(f"--opensplat-src {src}: not an OpenSplat checkout (no opensplat.cpp / CMakeLists.txt)")
    exe = build / "opensplat"
    newest = max(p.stat().st_mtime for p in src.glob("*.[ch]pp"))
    if exe.is_file() and exe.stat().st_mtime > newest:
        return exe
    if shutil.which("cmake") is None:
        raise PeerError("cmake not found: apt-get install cmake")
    missing = [h for h in ("/usr/include/opencv4", "/usr/include/nlohmann/json.hpp", "/usr/include/nanoflann.hpp",
                           "/usr/include/cxxopts.hpp") if not Path(h).exists()]
    if missing:
        raise PeerError(f"missing {', '.join(missing)}: apt-get install {DEBIAN}")
    import torch.utils
    build.mkdir(parents=True, exist_ok=True)
    shim = build / "torch_linalg_shim.h"
    shim.write_text(SHIM)
    subprocess.run(["cmake", str(src.resolve()), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                    "-DGPU_RUNTIME=CPU", "-DCMAKE_BUILD_TYPE=Release", "-DFETCHCONTENT_TRY_FIND_PACKAGE_MODE=ALWAYS",
                    f"-DCMAKE_CXX_FLAGS=-include {shim.resolve()}"], cwd=build, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["make", f"-j{os.cpu_count() or 1}", "opensplat"], cwd=build, check=True, stdout=subprocess.DEVNULL)
    return exe


def _config(args, output_dir: str):
    from hydra import compose, initialize_config_dir
    steps = args.steps
    overrides = [f"scene.max_init_points={args.gaussians}", f"output_dir={output_dir}", "log.progress=false",
                 "log.tensorboard=false", "log.snapshot_every=0", "checkpoint.every=0", f"num_threads={THREADS}",
                 "model.sh_degree=3", "model.sh_degree_interval=1", f"densify.refine_start_iter={steps + 1}",
                 f"densify.reset_every={steps + 1}",
                 f"optim.stage_schedule=[{{name:pretrain,steps:{steps}}},{{name:entropy,steps:1}},{{name:sugar,steps:1}}]",
                 *args.overrides]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(args.config_name, overrides=overrides)


def export_street(args, out: Path) -> dict:
    """The trainer's training views and initial points as a nerfstudio project OpenSplat reads."""
    import numpy as np
    from PIL import Image
    from models.gaussians.vanilla import sh0_to_rgb
    from models.trainers import configure_process
    from models.trainers.single import SingleTrainer
    cfg = _config(args, tempfile.mkdtemp())
    configure_process(cfg)
    tr = SingleTrainer(cfg, output_dir=None)
    (out / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    flip = np.diag([1.0, -1.0, -1.0, 1.0])   # OpenCV camera axes (x right, y down, z ahead) -> OpenGL's
    for i, view in enumerate(tr.dataset.train_views):
        name = f"images/{i:04d}.png"
        Image.fromarray(view.pixels.cpu().numpy()).save(out / name)
        K = view.K.double().cpu().numpy()
        frames.append({"file_path": name, "w": int(view.width), "h": int(view.height),
                       "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
                       "transform_matrix": (view.camera_to_world.double().cpu().numpy() @ flip).tolist()})
    xyz = tr.model.params["means"].detach().cpu().numpy().astype(np.float32)
    rgb = (sh0_to_rgb(tr.model.params["sh0"].detach()[:, 0]).clamp(0, 1) * 255).round().byte().cpu().numpy()
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(out / "points3D.ply", "wb") as f:
        f.write(header.encode())
        for p, c in zip(xyz, rgb):
            f.write(struct.pack("<fffBBB", *p, *c))
    (out / "transforms.json").write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames,
                                                     "ply_file_path": "points3D.ply"}, indent=1))
    return {"views": len(frames), "size": f"{frames[0]['w']}x{frames[0]['h']}", "gaussians": len(xyz)}


def worker_ours(args) -> dict:
    import torch
    from models.trainers import configure_process
    from models.trainers.single import SingleTrainer
    cfg = _config(args, tempfile.mkdtemp())
    configure_process(cfg)
    tr = SingleTrainer(cfg, output_dir=None)
    times = []
    tr.add_step_callback(lambda trainer, info: times.append(info.seconds) if info.stage == "pretrain" else None)
    start = tr.num_gaussians
    tr.train(num_steps=args.steps)
    return {"times": times, "gaussians": [start, tr.num_gaussians], "threads": torch.get_num_threads()}


def run_ours(args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, "-m", "benchmarks.bench_peer", "--worker", "--out", f.name, "--steps", str(args.steps),
               "--gaussians", str(args.gaussians), "--config-name", args.config_name, *args.overrides]
        subprocess.run(cmd, cwd=REPO, check=True)
        return json.loads(Path(f.name).read_text())


def run_opensplat(exe: Path, project: Path, args) -> dict:
    n = args.steps
    out = project / "out"
    out.mkdir(exist_ok=True)
    cmd = [str(exe), str(project), "--cpu", "-n", str(n), "--num-downscales", "0", "--refine-every", str(n + 1),
           "--warmup-length", str(n + 1), "--reset-alpha-every", str(n + 1), "--sh-degree", "3",
           "--sh-degree-interval", "1", "--ssim-weight", "0.2", "-o", str(out / "splat.ply")]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    stamps = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env) as p:
        lines = []
        for line in p.stdout:
            if line.startswith("Step "):
                stamps.append(time.perf_counter())
            lines.append(line)
    if p.returncode != 0 or len(stamps) < n:
        raise PeerError(f"opensplat exited {p.returncode} after {len(stamps)} of {n} steps:\n{''.join(lines[-15:])}")
    return {"times": [b - a for a, b in zip(stamps, stamps[1:])]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--opensplat-src", type=Path, help="a checkout of an OpenSplat release (not committed here)")
    ap.add_argument("--build-dir", type=Path, default=REPO / "outputs" / "peer" / "opensplat-build")
    ap.add_argument("--gaussians", type=int, default=15000, help="the fixed Gaussian count of both trainers")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20, help="steps of each run left out of its median")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--config-name", default="omnire_sugar")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--export", type=Path, default=None, help="write the street as the nerfstudio project OpenSplat "
                    "reads (transforms.json, images/, points3D.ply) into this folder and stop")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for both (the street: scene.*)")
    args = ap.parse_args(argv)
    if args.worker:
        result = worker_ours(args)
        args.out.write_text(json.dumps(result))
        return result
    if args.export is not None:
        street = export_street(args, args.export)
        print(f"wrote {args.export}: {street['views']} views at {street['size']}, {street['gaussians']} points")
        return street
    if args.opensplat_src is None:
        ap.error("--opensplat-src PATH is needed: a checkout of an OpenSplat release")
    if args.steps <= args.warmup + 10:
        ap.error(f"--steps {args.steps}: more than --warmup + 10 ({args.warmup + 10}) are needed")
    try:
        exe = build_opensplat(args.opensplat_src, args.build_dir)
    except (PeerError, subprocess.CalledProcessError) as e:
        sys.exit(f"bench_peer: building OpenSplat failed: {e}")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        street = export_street(args, project)
        runs = {"ours (SingleTrainer, cpp backend)": [], "OpenSplat --cpu": []}
        for _ in range(args.runs):
            runs["ours (SingleTrainer, cpp backend)"].append(run_ours(args))
            runs["OpenSplat --cpu"].append(run_opensplat(exe, project, args))
    print(f"default street ({' '.join(args.overrides) or 'no overrides'}): {street['views']} training views at "
          f"{street['size']}, {street['gaussians']} Gaussians from the same LiDAR points, no densification, SH 3, "
          f"{THREADS} threads; {args.steps} steps a run, the first {args.warmup} left out, median of {args.runs} runs")
    print(f"{'trainer':<36}{'ms/step':>9}{'runs (ms)':>28}")
    table = {}
    for name, rs in runs.items():
        meds = [1000 * statistics.median(r["times"][args.warmup:]) for r in rs]
        table[name] = {"ms_per_step": statistics.median(meds), "runs_ms": meds}
        print(f"{name:<36}{statistics.median(meds):>9.1f}{', '.join(f'{m:.1f}' for m in meds):>28}")
    ours, peer = (table[k]["ms_per_step"] for k in runs)
    print(f"ours is {peer / ours:.2f}x faster per step")
    result = {"street": street, "steps": args.steps, "warmup": args.warmup, "threads": THREADS,
              "overrides": args.overrides, "table": table, "speedup": peer / ours,
              "ours_gaussians": runs["ours (SingleTrainer, cpp backend)"][0]["gaussians"]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
