"""Training of the registered model kinds: config, loop, EMA, checkpoints, experiment files, distributed helpers."""

from interhandgen.training.checkpoint import load_checkpoint
from interhandgen.training.config import TrainConfig
from interhandgen.training.distributed import dist_info, exit_distributed, init_distributed_from_env
from interhandgen.training.ema import EMA
from interhandgen.training.objective import objective_geometry
from interhandgen.training.experiment import RunSetup, load_experiment, setup_run, write_run_config
from interhandgen.training.preview import sample_preview_callback
from interhandgen.training.trainer import TrainResult, train

__all__ = ["EMA", "RunSetup", "TrainConfig", "TrainResult", "dist_info", "exit_distributed",
           "init_distributed_from_env", "load_checkpoint", "load_experiment", "objective_geometry", "sample_preview_callback",
           "setup_run", "train", "write_run_config"]
