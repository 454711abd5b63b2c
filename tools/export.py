"""`omnire-export` as a script: `.venv/bin/python tools/export.py ARGS` runs `.venv/bin/omnire-export ARGS` (omnire_cli/export.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.export import main

if __name__ == "__main__":
    sys.exit(main())
