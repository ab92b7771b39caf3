"""Pure tensor math: losses, post-hoc normalisation, metrics, calibration and priors (no I/O)."""
