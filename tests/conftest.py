"""The test suite is an entry point like tools/: it pins the CPU numerics before torch and NumPy
load (models/reproducibility.py), so that the suite sees what a user's run gets by default.
With OMNIRE_REPRODUCIBLE=0 in the environment it runs in the fast mode instead."""
from models.reproducibility import pin_cpu_numerics

pin_cpu_numerics()
