"""tfx_transfer: transfer learning for NLP on Keras 3 / TensorFlow.

Public API (see README.md):
    BertConfig, BertEncoder, HubEncoder  the from-scratch encoder, its config, a TF Hub module as an encoder
    BertTokenizer, BertPacker, BertPreprocessor    raw text -> encoder inputs (tensorflow-text)
    load_checkpoint, LoadReport, AssignmentMap     checkpoints with explicit name maps and a report
    AdapterConfig, save_adaptation, load_adaptation parameter-efficient adaptation, adapter-only files
    BertClassifier, BertSpanLabeler                 sentence (pair) classification, span prediction (SQuAD)
    export_for_serving                              a TF Serving SavedModel that takes raw text
    from_keras_hub, to_keras_hub                    keras-hub BertBackbone <-> BertEncoder, in memory
    create_optimizer                                BERT's AdamW with its schedules, clipping and layer-wise rates
"""

__version__ = "0.1.0"

# First, before TensorFlow is imported: the runtime settings we ask of it (runtime_defaults.py: oneDNN kernels on
# every x86-64 CPU), then our scripts import TensorFlow with its native start-up lines filtered out (native_logs.py).
from tfx_transfer import runtime_defaults  # noqa: F401  (isort: skip)
from tfx_transfer import native_logs  # noqa: F401  (isort: skip)
from tfx_transfer.adaptation import AdapterConfig, apply_strategy, load_adaptation, save_adaptation
from tfx_transfer.adaptation.optimizers import create_optimizer
from tfx_transfer.checkpoints import AssignmentMap, CheckpointMismatchError, LoadReport, load_checkpoint
from tfx_transfer.checkpoints.keras_hub_interop import from_keras_hub, to_keras_hub
from tfx_transfer.config import BertConfig
from tfx_transfer.encoders import BertEncoder, HubEncoder
from tfx_transfer.export import export_for_serving
from tfx_transfer.models import BertClassifier, BertSpanLabeler
from tfx_transfer.pretrained import DEFAULT_MODEL, resolve_pretrained
from tfx_transfer.text import BertPacker, BertPreprocessor, BertTokenizer

__all__ = [
    "BertConfig", "BertEncoder", "BertTokenizer", "BertPacker", "BertPreprocessor", "load_checkpoint",
    "LoadReport", "AssignmentMap", "CheckpointMismatchError", "resolve_pretrained", "DEFAULT_MODEL", "__version__",
    "AdapterConfig", "apply_strategy", "save_adaptation", "load_adaptation", "BertClassifier", "BertSpanLabeler",
    "HubEncoder", "export_for_serving", "from_keras_hub", "to_keras_hub", "create_optimizer",
]
