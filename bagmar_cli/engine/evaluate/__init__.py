"""Evaluating a checkpoint: its outputs on a split, the typed report, post-hoc methods, τ search and comparison."""
