"""The loops: training, evaluation, τ search and export, calling the pure parts in functional/."""
