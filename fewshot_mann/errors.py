"""The errors a user can cause (bad input, missing data, bad checkpoints), defined here and raised
anywhere: a leaf module (it imports nothing of the package), so any layer can raise them.

The CLI turns these into one clear line and exit status 2; set FEWSHOT_MANN_DEBUG=1 to get the
full traceback instead.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is impossible or inconsistent."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt, not ours, or does not fit the model."""


class MemoryStoreError(CheckpointError):
    """A life-long memory's folder is missing, damaged, not ours or bound to another model, or
    it was asked to forget what it does not hold."""


class DataNotFoundError(FileNotFoundError):
    """The dataset is not where the configuration says."""


class DatasetError(ValueError):
    """A custom dataset is missing, empty or unusable as configured."""


class SplitError(ValueError):
    """A split is unknown, names classes the data lacks, or leaks classes across sides."""


class RunExistsError(FileExistsError):
    """A new run was asked for in a folder that holds one (resume it, or choose another)."""


class TrainingDiverged(RuntimeError):
    """Training diverged (NaN, loss spike, accuracy collapse) and is not rolled back; the last
    good checkpoint is kept."""


class PredictError(ValueError):
    """The support set or the queries cannot be used with this model."""


class DistributedError(RuntimeError):
    """A training process was lost (killed, crashed, timed out) or the group could not form."""


# What the CLI reports in one line (exit status 2): the package's own types, and OSError, the
# environment's (a file that cannot be read or written, a full disk). Anything else (a
# ValueError or RuntimeError from torch or from our own code) is a bug: a full traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, CheckpointError, DataNotFoundError, DatasetError, SplitError, RunExistsError,
    TrainingDiverged, PredictError, DistributedError, OSError,
)
