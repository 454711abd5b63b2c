"""The render timing behind `python -m benchmarks.bench_render`: the library's rows, and the command's
table (run as its command line runs it)."""
import subprocess
import sys
from pathlib import Path

import torch

from models.rendering.timing import time_grid, time_run_views

REPO = Path(__file__).resolve().parents[2]


def bench_render(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_render", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_bench_render_runs_a_tiny_subset():
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rows = list(time_grid([200], ["16x24"], reps=1, dense_reps=1))
    finally:
        torch.set_num_threads(n)
    out = bench_render("--n", "200", "--size", "16x24", "--reps", "1", "--dense-reps", "1", "--threads", "1")
    assert "compiled s" in out and "pytorch s" in out and "dense s" in out
    assert rows[0]["cpp_s"] > 0 and rows[0]["fast_s"] > 0 and rows[0]["dense_s"] > 0


def test_bench_render_times_a_trained_run_in_its_views(tmp_path):
    """--run: a trained model in its own training views, per backend; the cpp and torch backends
    agree on the contributing pairs of each view."""
    from models.mesh.run_io import load_run
    from models.trainers.single import SingleTrainer
    from tests.trainers.tiny_run import tiny_config

    out = tmp_path / "run"
    n = torch.get_num_threads()
    try:
        SingleTrainer(tiny_config(tmp_path / "scene", out), output_dir=out).train()
        run = load_run(out)
        torch.set_num_threads(1)  # as --threads 1
        rows = list(time_run_views(run, views=2, mode="RGB", backends=["cpp", "torch"], reps=1))
        with_depth = list(time_run_views(run, views=1, mode="RGB+ED", backends=["cpp"], reps=1))
    finally:
        torch.set_num_threads(n)
    text = bench_render("--run", str(out), "--views", "1", "--reps", "1", "--threads", "1", "--backends", "cpp,torch",
                        "--mode", "RGB+ED")
    assert "cpp s" in text and "torch s" in text and "mode RGB+ED" in text
    assert len(rows) == 2 and rows[0]["view"] != rows[1]["view"]
    for r in rows + with_depth:
        assert 0 < r["visible"] and r["n_pairs"] > 0 and r["cpp_s"] > 0
    assert all(r["torch_s"] > 0 for r in rows)
