"""Checkpoint format detection: a path -> (format name, reader, built-in assignment map).

Formats, tried in order:
  hf_safetensors    `model.safetensors` / a shard index, or a directory holding one (Hugging Face); the task
                    head is read when config.json's `architectures` names one we have (sequence classification,
                    question answering)
  keras_hub_preset  a keras-hub `save_to_preset` directory (config.json of a keras-hub BertBackbone), with the
                    head of its task.json (BertTextClassifier)
  keras             a `.keras` file, or a directory with `*.keras` or `model.weights.h5` + a config (ours)
  tf_checkpoint     a TF checkpoint, name-based (tf.compat.v1 Saver, Estimator) or object-based (tf.train.Checkpoint,
                    read by the variable names its object graph records), with Google BERT (`bert/...`) or Model
                    Garden (`transformer/layer_N/...`) names; its format name is the dialect
  saved_model       a SavedModel: a TF Hub encoder by Model Garden's export_tfhub (model_garden), a TF1 Hub module
                    (google_tf1), or our hub_modules export (tfx_hub)
`open_checkpoint` lists the formats and what the path holds when nothing fits. Pickles (`pytorch_model.bin`) are
refused without being opened.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Callable, List, NamedTuple

from tfx_transfer.checkpoints.assignment_map import AssignmentMap, Rule
from tfx_transfer.checkpoints.keras_hub_presets import is_keras_hub_preset, preset_arrays
from tfx_transfer.checkpoints.readers import ArrayReader, ObjectCheckpointReader, SafetensorsReader, TFCheckpointReader
from tfx_transfer.checkpoints.saved_models import read_saved_model
from tfx_transfer.checkpoints.tables import GOOGLE, KERAS_HUB, hf_table, model_garden_table
from tfx_transfer.encoders.bert_encoder import BertEncoder
from tfx_transfer.io_utils import read_json

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")
# A run_pretraining.py final/ holds the masked-LM head: loaded by a model that has it, discarded by the others (as
# the pretraining heads of the other formats are).
IDENTITY = AssignmentMap([Rule(r"(.*)", r"\1")], discard=[r"masked_lm/.*"], name="keras")


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
        # The `checkpoint` file is missing, or names a path that moved (Estimator writes absolute paths): the
        # directory's own checkpoints decide, the highest step (`model.ckpt-<step>`) first.
        prefixes = [index[: -len(".index")] for index in glob.glob(os.path.join(path, "*.index"))]
        if len(prefixes) <= 1:
            return prefixes[0] if prefixes else ""
        steps = {prefix: int(m.group(1)) for prefix in prefixes for m in [re.search(r"-(\d+)$", prefix)] if m}
        return max(steps, key=steps.get) if len(steps) == len(prefixes) else ""
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    return ""


def keras_path(path: str) -> str:
    if os.path.isdir(path):
        if is_keras_hub_preset(path):  # its model.weights.h5 is keras-hub's, not ours
            return ""
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


def hf_architecture(path: str):
    """`architectures[0]` of the config.json beside Hugging Face weights (e.g. 'BertForSequenceClassification')."""
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    config = os.path.join(directory, "config.json")
    if not os.path.isfile(config):
        return None
    values = read_json(config, "a Hugging Face config.json")
    architectures = values.get("architectures") if isinstance(values, dict) else None
    return architectures[0] if isinstance(architectures, list) and architectures else None


def pickled_weights(path: str) -> List[str]:
    """Pickled PyTorch weight files at `path` (the file itself, or in the directory)."""
    if os.path.isfile(path):
        return [path] if path.endswith(PICKLE_SUFFIXES) else []
    if os.path.isdir(path):
        return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(PICKLE_SUFFIXES)
                      and (n.startswith(("pytorch_model", "model")) or n.endswith((".pt", ".pth"))))
    return []


def pickle_refusal(files) -> str:
    """Why a pickled checkpoint is refused, and how to convert it."""
    return (f"{os.path.basename(files[0])} is a pickled PyTorch checkpoint; tfx_transfer never unpickles files (a "
            "pickle can run arbitrary code when loaded). Convert it to safetensors where you trust it: with "
            "transformers, `AutoModel.from_pretrained(dir).save_pretrained(out_dir)` (transformers >= 5 always writes "
            "model.safetensors; 4.x with safe_serialization=True), or with torch and safetensors, "
            "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')`.")


# ------------------------------------------------------------------ openers
def _open_hf(path):
    return SafetensorsReader(safetensors_path(path)), hf_table(hf_architecture(path)).assignment_map()


def _open_keras_hub(path):
    return ArrayReader(preset_arrays(path), path), KERAS_HUB.assignment_map()


def keras_model_arrays(path: str) -> dict:
    """{variable path: value} of a model saved by Keras (`.keras`, or `model.weights.h5` + config.json)."""
    import keras

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
        raise ValueError(f"{file}: cannot be loaded by Keras ({type(e).__name__}: {e}).") from e
    return {variable.path: variable.numpy() for variable in model.weights}


def _open_keras(path):
    return ArrayReader(keras_model_arrays(path), keras_path(path)), IDENTITY


def _names_are_ours(names) -> bool:
    """`BertEncoder` variable paths (a tf.train.Checkpoint of one of our Keras 3 models records them)."""
    return any(re.match(r"(.*/)?transformer_layer_\d+/self_attention/query/kernel$", name) for name in names)


def open_tf_checkpoint(prefix):
    """(reader, built-in AssignmentMap) of a name-based or object-based TF checkpoint at `prefix`."""
    object_based = ObjectCheckpointReader.is_object_based(prefix)
    reader = ObjectCheckpointReader(prefix) if object_based else TFCheckpointReader(prefix)
    names = list(reader.shapes())
    if object_based and _names_are_ours(names):
        return reader, IDENTITY
    for table in (GOOGLE, model_garden_table(names)):
        if _names_look_like(names, table):
            return reader, table.assignment_map()
    hint = ""
    if object_based:
        hint = (" It is an object-based TF2 checkpoint (tf.train.Checkpoint); the variable names its object graph "
                "records are not a BERT's in a dialect we read: restore it into the model that wrote it and save "
                "that model in a format listed here.")
    raise ValueError(
        f"{prefix}: a TensorFlow checkpoint whose names are neither Google BERT (bert/...), Model Garden "
        f"(transformer/layer_N/...) nor tfx_transfer's; first names: {sorted(names)[:5]}.{hint}"
    )


def _open_tf_checkpoint(path):
    return open_tf_checkpoint(tf_checkpoint_prefix(path))


TFX_HUB = AssignmentMap([Rule(r"(.*)", r"\1")], name="tfx_hub")


def _open_saved_model(path):
    contents = read_saved_model(path)
    reader = ArrayReader(contents.arrays, path)
    if contents.tfx_paths:
        return reader, TFX_HUB
    for table in (model_garden_table(contents.arrays), GOOGLE):
        if _names_look_like(contents.arrays, table):
            return reader, table.assignment_map()
    raise ValueError(
        f"{path}: a SavedModel without Model Garden / TF Hub (transformer/layer_N/...) or google-research/bert "
        f"(bert/...) variable names; its first variables: {sorted(contents.arrays)[:5]}."
    )


def _is_tf_checkpoint(path):
    return bool(tf_checkpoint_prefix(path))


FORMATS: List[CheckpointFormat] = [
    CheckpointFormat("hf_safetensors", "Hugging Face BERT: model.safetensors (or a shard index), or a directory "
                     "holding it", lambda p: bool(safetensors_path(p)), _open_hf),
    CheckpointFormat("keras_hub_preset", "a keras-hub preset directory (BertBackbone.save_to_preset: config.json, "
                     "model.weights.h5; task.json for a task)", is_keras_hub_preset, _open_keras_hub),
    CheckpointFormat("keras", "a .keras file, or a directory with one .keras file or model.weights.h5 and "
                     "config.json", lambda p: bool(keras_path(p)), _open_keras),
    CheckpointFormat("tf_checkpoint", "a TensorFlow checkpoint, name-based or object-based (prefix, .index file or "
                     "directory), with Google BERT (bert/...) or Model Garden names", _is_tf_checkpoint,
                     _open_tf_checkpoint),
    CheckpointFormat("saved_model", "a SavedModel: a TF Hub BERT encoder (Model Garden export_tfhub, TF1 Hub "
                     "module, hub_modules.export_encoder)", is_saved_model, _open_saved_model),
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
    pickles = pickled_weights(path)
    if pickles:
        raise ValueError(f"{path}: {pickle_refusal(pickles)}")
    holds = ", ".join(sorted(os.listdir(path))) if os.path.isdir(path) else "a file"
    known = "; ".join(f"{f.name}: {f.description}" for f in FORMATS)
    raise ValueError(f"Unknown checkpoint format at {path!r} (it holds: {holds}). Known formats: {known}.")
