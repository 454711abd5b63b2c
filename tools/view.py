"""`omnire-view` as a script: `.venv/bin/python tools/view.py ARGS` runs `.venv/bin/omnire-view ARGS` (omnire_cli/view.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.view import main

if __name__ == "__main__":
    sys.exit(main())
