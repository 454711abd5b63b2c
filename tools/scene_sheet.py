"""`omnire-scene-sheet` as a script: `.venv/bin/python tools/scene_sheet.py ARGS` runs `.venv/bin/omnire-scene-sheet ARGS` (omnire_cli/scene_sheet.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
import sys

from omnire_cli.scene_sheet import main

if __name__ == "__main__":
    sys.exit(main())
