"""`omnire-mesh` as a script: `.venv/bin/python tools/extract_mesh.py ARGS` runs `.venv/bin/omnire-mesh ARGS` (omnire_cli/mesh.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.mesh import main

if __name__ == "__main__":
    sys.exit(main())
