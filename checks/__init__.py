"""Checks: scripts that exercise the project end to end against something outside the test suite
(a GPU, a browser viewer, a SLURM cluster, SIGKILL at random moments) and exit non-zero when a check
fails. Each runs from the repository root as `.venv/bin/python -m checks.<name>`:

  gpu_check.py      the PyTorch and compiled CPU backends against gsplat's CUDA rasterizer, timings
  fault_sigkill.py  SIGKILL at random moments of training; every kill recovers, the end is bitwise equal
  splat_viewer.py   a run's exports in the SuperSplat viewer (headless Chromium) against our render
  slurm_sweep.py    `make test-slurm`: a tiny sweep on a one-node SLURM, requeued and preempted jobs

Tests import nothing from here (they run the checks as commands).
"""
