"""Evaluating a trained model: predictions per split, the score calibration, the bits-per-pixel
baseline, plots and the checkpoint report `eval.py` writes. The metrics themselves are in
`jaxvqa.metrics`."""
