"""Benchmarks, device checks and their helpers (not part of the installed library).

Each `bench_*.py` / `gpu_check.py` / `fit_image.py` / `record_trace.py` is a script run from the
repository root as `.venv/bin/python benchmarks/<name>.py`; the helpers they share
(`random_scene.py`, `quality_bench.py`) are imported as `benchmarks.<name>`.
"""
