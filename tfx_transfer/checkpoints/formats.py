"""Checkpoint format detection: a path -> (format name, reader, built-in assignment map).

Formats, tried in order:
  hf_safetensors  `model.safetensors` / a shard index, or a directory holding one (Hugging Face)
  keras           a `.keras` file, or a directory with `*.keras` or `model.weights.h5` + a config (ours)
  google_tf1      a name-based TF checkpoint with `bert/...` names (google-research/bert, adapter-bert)
  model_garden    a name-based TF checkpoint or a SavedModel (TF Hub) with Model Garden names
`open_checkpoint` lists the formats and what the path holds when nothing fits.
"""

from __future__ import annotations

import glob
import os
from typing import Callable, List, NamedTuple

from tfx_transfer.checkpoints.assignment_map import AssignmentMap, Rule
from tfx_transfer.checkpoints.readers import ArrayReader, SafetensorsReader, TFCheckpointReader, saved_model_arrays
from tfx_transfer.checkpoints.tables import GOOGLE, HF, MODEL_GARDEN


class CheckpointFormat(NamedTuple):
    name: str
    description: str
    detect: Callable[[str], bool]
    open: Callable[[str], tuple]


# ------------------------------------------------------------------ locating files
def safetensors_path(path: str) -> str:
    if os.path.isdir(path):
        for name in ("model.safetensors", "model.safetensors.index.json"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        return ""
    if path.endswith(".safetensors") or path.endswith(".safetensors.index.json"):
        return path
    return ""


def tf_checkpoint_prefix(path: str) -> str:
    """The prefix of a name-based TF checkpoint at `path` (a prefix, an `.index` file or a directory), or ""."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return ""
        preferred = os.path.join(path, "bert_model.ckpt")
        if os.path.isfile(preferred + ".index"):
            return preferred
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(glob.glob(os.path.join(path, "*.index")))
        return indexes[0][: -len(".index")] if len(indexes) == 1 else ""
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    return ""


def keras_path(path: str) -> str:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.keras")))
        if len(files) == 1:
            return files[0]
        weights = os.path.join(path, "model.weights.h5")
        return weights if os.path.isfile(weights) else ""
    return path if path.endswith(".keras") or path.endswith(".weights.h5") else ""


def is_saved_model(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def _names_look_like(names, table) -> bool:
    mapping = table.assignment_map()
    return any(mapping.resolve(name).kind == "load" for name in names)


# ------------------------------------------------------------------ openers
def _open_hf(path):
    return SafetensorsReader(safetensors_path(path)), HF.assignment_map()


IDENTITY = AssignmentMap([Rule(r"(.*)", r"\1")], name="keras")


def keras_model_arrays(path: str) -> dict:
    """{variable path: value} of a model saved by Keras (`.keras`, or `model.weights.h5` + config.json)."""
    import keras

    import tfx_transfer  # noqa: F401  (registers our layers for deserialisation)
    from tfx_transfer.encoders.bert_encoder import BertEncoder

    file = keras_path(path)
    try:
        if file.endswith(".keras"):
            model = keras.models.load_model(file, compile=False)
        else:
            directory = os.path.dirname(file)
            model = BertEncoder.from_config_file(directory)
            model.load_weights(file)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as e:
        raise ValueError(f"{file}: cannot be loaded by Keras ({type(e).__name__}: {e}).") from None
    return {variable.path: variable.numpy() for variable in model.weights}


def _open_keras(path):
    return ArrayReader(keras_model_arrays(path), keras_path(path)), IDENTITY


def _open_tf_checkpoint(path):
    prefix = tf_checkpoint_prefix(path)
    reader = TFCheckpointReader(prefix)
    names = list(reader.shapes())
    for table in (GOOGLE, MODEL_GARDEN):
        if _names_look_like(names, table):
            return reader, table.assignment_map()
    hint = ""
    if any(name.endswith("/.ATTRIBUTES/VARIABLE_VALUE") for name in names):
        hint = (" It is an object-based TF2 checkpoint (tf.train.Checkpoint), which stores object paths instead of "
                "variable names: restore it into the model that wrote it and export a SavedModel, or save a "
                "name-based checkpoint.")
    raise ValueError(
        f"{prefix}: a TensorFlow checkpoint whose names are neither Google BERT (bert/...) nor Model Garden "
        f"(transformer/layer_N/...); first names: {sorted(names)[:5]}.{hint}"
    )


def _open_saved_model(path):
    arrays = saved_model_arrays(path)
    if not _names_look_like(arrays, MODEL_GARDEN):
        raise ValueError(
            f"{path}: a SavedModel without Model Garden / TF Hub BERT variable names "
            f"(transformer/layer_N/...); its first variables: {sorted(arrays)[:5]}."
        )
    return ArrayReader(arrays, path), MODEL_GARDEN.assignment_map()


def _is_tf_checkpoint(path):
    return bool(tf_checkpoint_prefix(path))


FORMATS: List[CheckpointFormat] = [
    CheckpointFormat("hf_safetensors", "Hugging Face BERT: model.safetensors (or a shard index), or a directory "
                     "holding it", lambda p: bool(safetensors_path(p)), _open_hf),
    CheckpointFormat("keras", "a .keras file, or a directory with one .keras file or model.weights.h5 and "
                     "config.json", lambda p: bool(keras_path(p)), _open_keras),
    CheckpointFormat("tf_checkpoint", "a name-based TensorFlow checkpoint (prefix, .index file or directory) with "
                     "Google BERT (bert/...) or Model Garden names", _is_tf_checkpoint, _open_tf_checkpoint),
    CheckpointFormat("saved_model", "a TF2 SavedModel (TF Hub BERT encoder) with Model Garden variable names",
                     is_saved_model, _open_saved_model),
]


def open_checkpoint(path) -> tuple:
    """Returns (format name, reader, built-in AssignmentMap) for `path`.

    The format name of TF checkpoints and SavedModels is the dialect found (google_tf1 or model_garden).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: no known format matches; the message lists the formats and what the path holds.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and not os.path.isfile(path + ".index"):
        raise FileNotFoundError(f"Checkpoint not found: {path!r}.")
    for fmt in FORMATS:
        if fmt.detect(path):
            reader, builtin = fmt.open(path)
            name = builtin.name if fmt.name in ("tf_checkpoint", "saved_model") else fmt.name
            return name, reader, builtin
    holds = ", ".join(sorted(os.listdir(path))) if os.path.isdir(path) else "a file"
    known = "; ".join(f"{f.name}: {f.description}" for f in FORMATS)
    extra = ""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "pytorch_model.bin")):
        extra = (" pytorch_model.bin is a pickled PyTorch checkpoint: convert it to safetensors first "
                 "(transformers: model.save_pretrained(dir, safe_serialization=True)).")
    raise ValueError(f"Unknown checkpoint format at {path!r} (it holds: {holds}). Known formats: {known}.{extra}")
