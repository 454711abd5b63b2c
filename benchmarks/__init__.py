"""Benchmarks (not part of the installed library; checks live in checks/).

Each `bench_*.py` / `fit_image.py` / `record_trace.py` / `surface_bands.py` runs from the repository
root as `.venv/bin/python -m benchmarks.<name>`: it parses arguments, calls library code (the
quality comparison is models/quality/) and prints. Tests import nothing from here; they run a
benchmark as a command where they check that it runs.
"""
