"""The same bytes on every machine (README, Reproducibility).

Each test trains in a fresh process through tools/train.py, as a user does. The environment the
process starts with plays the machine: torch's kernel set (ATEN_CPU_CAPABILITY), MKL's
instruction set (MKL_ENABLE_INSTRUCTIONS) and the thread count a machine would give it. The
committed golden checksums (tests/fixtures/golden_tiny_run.json) were made on another machine;
whichever machine runs this suite must reproduce them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.reproducibility import ENV_SWITCH, PINNED

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "fixtures" / "golden_tiny_run.json"
OUTPUTS = ("exports/gaussians.ply", "metrics.json")


def user_environment(**extra: str) -> dict:
    """The environment of a user's shell: none of the pinned variables (the suite's own process has
    them), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED and k != ENV_SWITCH}
    env.update(extra)
    return env


def train(out: Path, overrides, env: dict) -> dict:
    """Run tools/train.py in a new process; the md5 of each file of ``OUTPUTS``, and the log."""
    cmd = [sys.executable, str(REPO / "tools" / "train.py"), *overrides, f"output_dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = {name: hashlib.md5((out / name).read_bytes()).hexdigest() for name in OUTPUTS}
    return {"md5": sums, "log": proc.stdout + proc.stderr}


def test_the_tiny_run_gives_the_golden_bytes(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    run = train(tmp_path / "run", golden["overrides"], user_environment())
    assert "numerics: reproducible" in run["log"]
    assert run["md5"] == golden["md5"], (
        "the tiny run's bytes differ from the committed golden checksums: either this machine's numerics "
        "differ (a bug: README, Reproducibility) or a change altered the numbers on purpose; then update "
        f"{GOLDEN.relative_to(REPO)} in the same commit and say why")


# A shorter run than the golden one (half-size images, 160 steps), through all three stages and one
# densification: it is run once per simulated machine.
SHORT = ["--config-name", "omnire_sugar_quick", "log.progress=false", "scene.downscale=2",
         "optim.stage_schedule=[{name:pretrain,steps:110},{name:entropy,steps:10},{name:sugar,steps:40}]"]

MACHINES = [  # (torch's kernels, MKL's instructions, OpenMP threads the machine would give)
    ("default", "AVX2", "1"), ("avx2", "AVX2", "2"), ("avx512", "AVX2", "1"),
    ("default", "AVX512", "2"), ("avx2", "AVX512", "1"), ("avx512", "AVX512", "2"),
]


def test_simulated_machines_give_one_and_the_same_bytes(tmp_path):
    reference = train(tmp_path / "plain", SHORT, user_environment())["md5"]
    for aten, mkl, threads in MACHINES:
        env = user_environment(ATEN_CPU_CAPABILITY=aten, MKL_ENABLE_INSTRUCTIONS=mkl, OMP_NUM_THREADS=threads)
        got = train(tmp_path / f"{aten}_{mkl}_{threads}", SHORT, env)["md5"]
        assert got == reference, f"ATEN_CPU_CAPABILITY={aten} MKL_ENABLE_INSTRUCTIONS={mkl} OMP_NUM_THREADS={threads}"
    # The control: without the pinned numerics, torch's plain kernels (what a CPU without AVX2 runs,
    # and unlike what an AVX-512 CPU runs) give other bytes; so the runs above could have differed.
    unpinned = train(tmp_path / "unpinned", SHORT, user_environment(**{ENV_SWITCH: "0"},
                                                                    ATEN_CPU_CAPABILITY="default"))
    assert "numerics: fast" in unpinned["log"]
    assert unpinned["md5"]["exports/gaussians.ply"] != reference["exports/gaussians.ply"]


def test_pinning_after_torch_loaded_is_refused():
    code = ("import torch\nfrom models.reproducibility import pin_cpu_numerics\n"
            "try:\n    pin_cpu_numerics()\nexcept RuntimeError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=user_environment(), capture_output=True,
                          text=True, timeout=120)
    assert "must run before torch and NumPy are imported" in proc.stdout
    opted_out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=user_environment(**{ENV_SWITCH: "0"}),
                               capture_output=True, text=True, timeout=120)
    assert opted_out.returncode == 0 and opted_out.stdout == ""
