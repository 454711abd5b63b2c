import torch


def test_bench_render_runs_a_tiny_subset(capsys):
    from benchmarks import bench_render
    n = torch.get_num_threads()
    try:
        rows = bench_render.main(["--n", "200", "--size", "16x24", "--reps", "1", "--dense-reps", "1",
                                  "--threads", "1"])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert "compiled s" in out and "pytorch s" in out and "dense s" in out
    assert rows[0]["cpp_s"] > 0 and rows[0]["fast_s"] > 0 and rows[0]["dense_s"] > 0


def test_bench_render_times_a_trained_run_in_its_views(tmp_path, capsys):
    """--run: a trained model in its own training views, per backend; the cpp and torch backends
    agree on the contributing pairs of each view."""
    from benchmarks import bench_render
    from models.trainers.single import SingleTrainer
    from tests.trainers.tiny_run import tiny_config

    out = tmp_path / "run"
    n = torch.get_num_threads()
    try:
        SingleTrainer(tiny_config(tmp_path / "scene", out), output_dir=out).train()
        rows = bench_render.main(["--run", str(out), "--views", "2", "--reps", "1", "--threads", "1",
                                  "--backends", "cpp,torch"])
        with_depth = bench_render.main(["--run", str(out), "--views", "1", "--reps", "1", "--threads", "1",
                                        "--backends", "cpp", "--mode", "RGB+ED"])
    finally:
        torch.set_num_threads(n)
    text = capsys.readouterr().out
    assert "cpp s" in text and "torch s" in text and "mode RGB+ED" in text
    assert len(rows) == 2 and rows[0]["view"] != rows[1]["view"]
    for r in rows + with_depth:
        assert 0 < r["visible"] and r["n_pairs"] > 0 and r["cpp_s"] > 0
    assert all(r["torch_s"] > 0 for r in rows)
