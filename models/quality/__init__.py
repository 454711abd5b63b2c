"""The staged-quality comparison: does the sugar stage buy a better surface at the same step budget?

variants.py   the three schedules (plain 3DGS, + entropy, staged) and the configuration they train with
training.py   one variant trained in-process, with seconds and statistics per stage
scores.py     pixel-footprint τ, depth error against GT depth, the staged run's ratios against plain 3DGS
figure.py     the comparison's figure
bands.py      where a run's surface is right and wrong, by distance from the training cameras
benchmark.py  all of it end to end (behind `python -m benchmarks.bench_quality`)
"""
