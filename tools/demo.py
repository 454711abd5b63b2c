"""`omnire-demo` as a script: `.venv/bin/python tools/demo.py ARGS` runs `.venv/bin/omnire-demo ARGS` (omnire_cli/demo.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
