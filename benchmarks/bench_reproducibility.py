"""Same bytes from many processes: the README's tiny run, N times in N fresh processes, each file's
md5 counted, and compared with the golden checksums the repository holds.

    .venv/bin/python -m benchmarks.bench_reproducibility [--runs 50] [--simulate] [--record FILE]

--simulate adds one run per simulated machine (the environments of tests/test_reproducibility.py:
torch's kernel set, MKL's instruction set, OpenMP threads). Each process starts from the user's
environment (none of the pinned variables set), as a user's shell does; omnire-train pins them.
Prints a table of md5 -> number of runs, per file; exits 1 when the runs disagree or differ from
the golden checksums. One run takes about 20 s on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "fixtures" / "golden_tiny_run.json"
OUTPUTS = ("exports/gaussians.ply", "metrics.json")
SWITCH = "OMNIRE_REPRODUCIBLE"
PINNED_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")
SIMULATED = [{"ATEN_CPU_CAPABILITY": a, "MKL_ENABLE_INSTRUCTIONS": m, "OMP_NUM_THREADS": t}
             for a in ("default", "avx2", "avx512") for m in ("AVX2", "AVX512") for t in ("1", "2")]


def user_environment(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_VARS and k != SWITCH}
    env.update(extra or {})
    return env


def one_run(overrides, out: Path, env: dict) -> dict:
    cmd = [sys.executable, "-m", "omnire_cli.train", *overrides, f"output_dir={out}"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"a run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return {"seconds": time.perf_counter() - t,
            "md5": {f: hashlib.md5((out / f).read_bytes()).hexdigest() for f in OUTPUTS}}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--simulate", action="store_true", help="also one run per simulated machine (12 runs)")
    ap.add_argument("--record", help="also write the table to this file")
    args = ap.parse_args(argv)
    golden = json.loads(GOLDEN.read_text())
    cases = [("plain", {})] * args.runs + ([(" ".join(f"{k}={v}" for k, v in e.items()), e) for e in SIMULATED]
                                           if args.simulate else [])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_repro_") as tmp:
        for i, (name, extra) in enumerate(cases):
            r = one_run(golden["overrides"], Path(tmp) / f"run{i}", user_environment(extra))
            r["case"] = name
            results.append(r)
            print(f"run {i + 1:>3}/{len(cases)} {r['seconds']:5.1f} s  {r['md5']['exports/gaussians.ply'][:12]}  "
                  f"{r['md5']['metrics.json'][:12]}  {name}", flush=True)
    import torch  # noqa: E402  (only for the header; the runs are separate processes)
    lines = [f"# {len(results)} processes of the tiny run ({golden['command']})",
             f"# machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"ATen capability without pinning: {torch.backends.cpu.get_cpu_capability()}",
             f"# command: .venv/bin/python -m benchmarks.bench_reproducibility --runs {args.runs}"
             + (" --simulate" if args.simulate else ""), ""]
    ok = True
    for f in OUTPUTS:
        counts = collections.Counter(r["md5"][f] for r in results)
        lines.append(f"{f}: {len(counts)} distinct md5 over {len(results)} runs")
        for md5, n in counts.most_common():
            tag = "golden" if md5 == golden["md5"][f] else "NOT the golden checksum"
            lines.append(f"  {md5}  {n:>3} runs  ({tag})")
        ok &= len(counts) == 1 and next(iter(counts)) == golden["md5"][f]
    lines.append(f"\nall runs identical and equal to the golden checksums: {'yes' if ok else 'NO'}")
    text = "\n".join(lines)
    print("\n" + text)
    if args.record:
        Path(args.record).write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
