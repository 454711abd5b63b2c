"""`omnire-train` as a script: `.venv/bin/python tools/train.py ARGS` runs `.venv/bin/omnire-train ARGS` (omnire_cli/train.py).

Importing omnire_cli pins the CPU numerics before torch and NumPy load (models/reproducibility.py).
"""
from omnire_cli.train import main

if __name__ == "__main__":
    main()
