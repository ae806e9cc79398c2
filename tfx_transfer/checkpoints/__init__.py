"""Checkpoints: read and write BERT weights in every common format, through explicit assignment maps.

    load_checkpoint(model, path) -> LoadReport         any format below, auto-detected
    save_google_checkpoint / save_hf_checkpoint / save_keras_model(encoder, out_dir)
    from_keras_hub(backbone) / to_keras_hub(encoder)    in-memory keras-hub interop
    (the converter CLI: python -m tfx_transfer.jobs.convert)
"""

from tfx_transfer.checkpoints.assignment_map import AssignmentMap, Rule
from tfx_transfer.checkpoints.formats import FORMATS, open_checkpoint
from tfx_transfer.checkpoints.keras_hub_interop import from_keras_hub, to_keras_hub
from tfx_transfer.checkpoints.loader import load_checkpoint, load_from_reader, model_variables
from tfx_transfer.checkpoints.names import NameTable, TensorName
from tfx_transfer.checkpoints.report import CheckpointMismatchError, LoadReport
from tfx_transfer.checkpoints.tables import GOOGLE, HF, KERAS_HUB, MODEL_GARDEN, TABLES
from tfx_transfer.checkpoints.transforms import FitRows, Reshape, Transform, Transpose
from tfx_transfer.checkpoints.writers import save_google_checkpoint, save_hf_checkpoint, save_keras_model

__all__ = [
    "AssignmentMap", "Rule", "Transform", "Transpose", "Reshape", "FitRows", "load_checkpoint", "load_from_reader",
    "model_variables", "LoadReport", "CheckpointMismatchError", "open_checkpoint", "FORMATS", "NameTable",
    "TensorName", "TABLES", "GOOGLE", "HF", "MODEL_GARDEN", "KERAS_HUB", "save_google_checkpoint",
    "save_hf_checkpoint", "save_keras_model", "from_keras_hub", "to_keras_hub",
]
