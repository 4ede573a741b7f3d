"""Training: the paper's objective, the optimizer, the jitted steps, checkpoints, the device mesh,
the run log and the training loop that `train.py` calls (trainer)."""
