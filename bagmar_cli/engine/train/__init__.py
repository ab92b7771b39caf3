"""Training: `recipe.train` runs the stages of a recipe, each built (build.py) and fitted (loop.py) into a run
directory (rundir.py) that a resume continues (resume.py); metrics.jsonl holds one `EpochRecord` an epoch."""
