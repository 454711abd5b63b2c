"""The console commands (``[project.scripts]`` in pyproject.toml): argument parsing over the library
in ``models/``, ``scenes/`` and ``sweeps/``, one module per command.

Importing this package pins the CPU numerics (``models.reproducibility``) before any command module
loads torch or NumPy, so every command gives the same bytes on any x86-64 CPU with AVX2. Command
modules therefore import this package first (Python does so when it imports ``omnire_cli.<command>``)
and keep torch and NumPy out of their module-level imports until then.
"""
from models.reproducibility import pin_cpu_numerics

pin_cpu_numerics()
