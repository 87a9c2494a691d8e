"""The errors a user can cause (bad input, missing data, bad checkpoints).

The CLI turns these into one clear line and exit status 2; set FEWSHOT_MANN_DEBUG=1 to get the
full traceback instead.
"""

from __future__ import annotations

from .checkpoint import CheckpointError
from .config import ConfigError
from .data.folder import DatasetError
from .data.omniglot import DataNotFoundError
from .data.splits import SplitError
from .distributed import DistributedError
from .predict import PredictError
from .train import TrainingDiverged

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, CheckpointError, DataNotFoundError, DatasetError, SplitError, TrainingDiverged,
    PredictError, DistributedError,
    FileExistsError, FileNotFoundError, ValueError, OSError,
)
