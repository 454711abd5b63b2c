"""Benchmarks and their helpers (not part of the installed library; checks live in checks/).

Each `bench_*.py` / `fit_image.py` / `record_trace.py` / `surface_bands.py` runs from the repository
root as `.venv/bin/python -m benchmarks.<name>`; the helper they share (`quality_bench.py`) is
imported as `benchmarks.quality_bench`. Tests import nothing from here.
"""
