import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_bench_render_runs_a_tiny_subset(capsys):
    import bench_render
    n = torch.get_num_threads()
    try:
        rows = bench_render.main(["--n", "200", "--size", "16x24", "--reps", "1", "--dense-reps", "1",
                                  "--threads", "1"])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert "compiled s" in out and "pytorch s" in out and "dense s" in out
    assert rows[0]["cpp_s"] > 0 and rows[0]["fast_s"] > 0 and rows[0]["dense_s"] > 0
