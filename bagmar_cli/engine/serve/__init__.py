"""Serving a checkpoint: export to a deployable file (`export`) and predictions on image files (`predictor`)."""
