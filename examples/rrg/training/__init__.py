"""Training: the tasks and their losses, one run (train_and_evaluate), sweeps, checkpoints, curves, sharding."""
