"""User-facing errors: each becomes one `Error:` line on stderr and an exit code, never a traceback."""


class BagmarError(Exception):
    """A failure the user can fix (bad file, bad value); exits with code 1."""

    exit_code = 1


class UsageError(BagmarError):
    """A malformed command line or setting; exits with code 2."""

    exit_code = 2


class DatasetError(BagmarError):
    """A dataset directory, archive or file that is missing or not valid."""


class CheckpointError(BagmarError):
    """A checkpoint that is missing, damaged, or not a bagmar checkpoint."""


class DownloadError(BagmarError):
    """A download that failed (offline, wrong checksum)."""


class TrainingError(BagmarError):
    """A training run that had to stop (non-finite loss, locked run directory)."""
