"""`omnire-gather` as a script: `.venv/bin/python tools/gather.py ARGS` runs `.venv/bin/omnire-gather ARGS` (omnire_cli/gather.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.gather import main

if __name__ == "__main__":
    sys.exit(main())
