"""Checkpoints: assignment maps, format readers, `load_checkpoint` and its `LoadReport`."""

from tfx_transfer.checkpoints.assignment_map import AssignmentMap, Rule
from tfx_transfer.checkpoints.formats import FORMATS, open_checkpoint
from tfx_transfer.checkpoints.hf import hf_bert_map
from tfx_transfer.checkpoints.loader import load_checkpoint, model_variables
from tfx_transfer.checkpoints.report import CheckpointMismatchError, LoadReport
from tfx_transfer.checkpoints.transforms import Reshape, Transform, Transpose

__all__ = [
    "AssignmentMap", "Rule", "Transform", "Transpose", "Reshape", "load_checkpoint", "model_variables",
    "LoadReport", "CheckpointMismatchError", "open_checkpoint", "FORMATS", "hf_bert_map",
]
