"""Sweeps: a recipe + a grid of config values -> one ordinary run directory per point, run as subprocesses.

Built on the toolkit, never imported by it (tests/test_layers.py):

- `spec`: the spec language (grid, named values, recipes, variables, figures, after-grid commands);
- `points`: each point's state on disk, its command, and the checks made before any point starts;
- `units`: the unit of work (one point, or a cohort of points in one process) and the one way to run it;
- `runner`: the local run (points as subprocesses, a few at a time, one sweep process per folder);
- `launchers`, `local`, `slurm`: where the units run (here, or as one Slurm job array through submitit);
- `collect`, `plots`: results.csv, the `--status` table, and the figures drawn from results.csv.
"""
