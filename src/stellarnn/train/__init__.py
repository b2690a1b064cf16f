"""One trainer and one checkpoint format for every stellarnn network.

This layer depends only on torch/numpy, so every job (atmospheres, synthesis, labels,
blase, stokes) may use it.
"""
from .checkpoint import (CheckpointError, file_sha256, load_checkpoint, read_checkpoint, register_model,
                         save_checkpoint, warm_start)
from .manifest import read_manifest, update_manifest
from .split import split_by_block, validation_split
from .trainer import History, ResumeStateError, TrainConfig, Trainer, pick_device, read_resume_state

__all__ = ["CheckpointError", "file_sha256", "load_checkpoint", "read_checkpoint", "register_model",
           "save_checkpoint", "warm_start", "read_manifest", "update_manifest", "History", "TrainConfig", "Trainer", "pick_device",
           "ResumeStateError", "read_resume_state", "split_by_block", "validation_split"]
