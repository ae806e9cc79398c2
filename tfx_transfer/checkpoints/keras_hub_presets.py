"""keras-hub preset directories (`save_to_preset`: config.json, model.weights.h5, tokenizer.json, assets/,
metadata.json, and task.json + task.weights.h5 for a task), read through keras-hub's own loader.

keras-hub is the one owner of its weight file layout (Keras' per-layer H5 groups), so the preset is loaded with
`from_preset` and its weights are read by variable path (`token_embedding/embeddings`,
`transformer_layer_0/self_attention_layer/query/kernel`, ..., `logits/kernel` for a BertTextClassifier), which the
KERAS_HUB name table maps.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from tfx_transfer.config import BertConfig
from tfx_transfer.io_utils import read_json


def _keras_hub_json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    try:
        values = read_json(path, "a keras-hub preset config")
    except ValueError:
        return None
    registered = str(values.get("registered_name") or "") if isinstance(values, dict) else ""
    module = str(values.get("module") or "") if isinstance(values, dict) else ""
    return values if registered.startswith("keras_hub>") or module.startswith("keras_hub") else None


def is_keras_hub_preset(path: str) -> bool:
    """A directory whose config.json is a keras-hub backbone config (`registered_name` 'keras_hub>...')."""
    return os.path.isdir(path) and _keras_hub_json(os.path.join(path, "config.json")) is not None


def bert_config_from_keras_hub(config: dict, source: str = "keras-hub config") -> BertConfig:
    """BertConfig of a keras-hub BertBackbone config (`BertBackbone.get_config()` or a preset's config.json
    "config"). keras-hub's BERT computes tanh GELU."""
    try:
        return BertConfig(vocab_size=config["vocabulary_size"], hidden_size=config["hidden_dim"],
                          num_hidden_layers=config["num_layers"], num_attention_heads=config["num_heads"],
                          intermediate_size=config["intermediate_dim"], hidden_act="gelu_approximate",
                          hidden_dropout_prob=config.get("dropout", 0.1),
                          attention_probs_dropout_prob=config.get("dropout", 0.1),
                          max_position_embeddings=config.get("max_sequence_length", 512),
                          type_vocab_size=config.get("num_segments", 2)).validate(source=source)
    except KeyError as e:
        raise ValueError(f"{source}: not a keras-hub BertBackbone config (no {e}).") from e


def preset_bert_config(path: str) -> BertConfig:
    """The BertConfig of the BertBackbone preset in directory `path`.

    Raises:
        ValueError: the preset's backbone is not a BertBackbone.
    """
    source = os.path.join(path, "config.json")
    values = _keras_hub_json(source)
    if values is None or values.get("class_name") != "BertBackbone":
        kind = values.get("class_name") if values else "no keras-hub backbone"
        raise ValueError(f"{path}: a keras-hub preset of {kind}; tfx_transfer reads BertBackbone presets.")
    return bert_config_from_keras_hub(values.get("config") or {}, source)


def preset_arrays(path: str) -> Dict[str, np.ndarray]:
    """{variable path: value} of the preset's task (backbone + head) when it has a task.json, else its backbone.

    Raises:
        ValueError: keras-hub cannot load the preset (the message says why).
    """
    import warnings

    import keras
    import keras_hub

    preset_bert_config(path)  # a BertBackbone, or a clear error before keras-hub's own
    task_json = _keras_hub_json(os.path.join(path, "task.json"))
    try:
        with warnings.catch_warnings():  # Keras warns that the saved optimizer state is not loaded (not needed here)
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = None
            if task_json is not None:
                cls = keras.saving.get_registered_object(task_json.get("registered_name"))
                if isinstance(cls, type) and issubclass(cls, keras_hub.models.Task):
                    model = cls.from_preset(path)
            if model is None:
                model = keras_hub.models.Backbone.from_preset(path)
    except Exception as e:  # keras-hub raises ValueError / KeyError / OSError for broken presets
        raise ValueError(f"{path}: keras-hub cannot load this preset ({type(e).__name__}: {e}).") from e
    arrays = {}
    for variable in model.weights:
        if variable.path in arrays:
            raise ValueError(f"{path}: two variables of the keras-hub model share the path {variable.path!r}.")
        arrays[variable.path] = np.asarray(variable)
    return arrays
