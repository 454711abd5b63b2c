"""`omnire-eval` as a script: `.venv/bin/python tools/eval.py ARGS` runs `.venv/bin/omnire-eval ARGS` (omnire_cli/eval.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
