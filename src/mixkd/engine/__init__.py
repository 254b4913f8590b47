"""The training engine: loop, checkpoints, metrics, run directories, distributed set-up."""
