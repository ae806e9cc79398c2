"""Writing an encoder in other people's formats: Google TF1 checkpoints, Hugging Face safetensors, Keras.

Every writer produces a complete model directory (weights + config + vocab.txt) atomically: it is written
to a temporary sibling and renamed into place, and an existing non-empty directory is only replaced with
`overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Optional

import numpy as np
import tensorflow as tf

from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.checkpoints.tables import GOOGLE, HF, MASKED_LM, NEXT_SENTENCE, hf_table
from tfx_transfer.encoders.bert_encoder import find_encoder
from tfx_transfer.io_utils import atomic_directory, write_json
from tfx_transfer.text.tokenizer_files import TokenizerSettings


def _tokenizer_settings(encoder, vocab_file, do_lower_case) -> TokenizerSettings:
    """The encoder's tokenizer settings (from `from_pretrained`), with `vocab_file` / `do_lower_case` overriding."""
    pretrained = encoder.pretrained
    settings = pretrained.tokenizer if pretrained else None
    vocab_file = vocab_file or (settings.vocab_file if settings else None)
    if vocab_file is None:
        raise ValueError("No vocabulary known for this encoder (it was not built by from_pretrained): pass "
                         "vocab_file=... so the written model is usable.")
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"Vocabulary file not found: {vocab_file!r}.")
    if do_lower_case is None:
        do_lower_case = settings.do_lower_case if settings else True
    if settings is None:
        return TokenizerSettings(vocab_file, bool(do_lower_case))
    return dataclasses.replace(settings, vocab_file=vocab_file, do_lower_case=bool(do_lower_case))


def _model_arrays(model):
    """{path: array} of everything in the model: encoder, adapters, task head."""
    return {path: np.asarray(variable) for path, variable in model_variables(model).items()}


def _copy_vocab(settings: TokenizerSettings, directory, config):
    shutil.copyfile(settings.vocab_file, os.path.join(directory, "vocab.txt"))
    write_json(os.path.join(directory, "tokenizer_config.json"),
               {**settings.to_tokenizer_config(), "model_max_length": config.max_position_embeddings})


def save_tf_checkpoint(arrays, prefix):
    """Writes {name: array} as a name-based TF checkpoint (`prefix.index`, `prefix.data-00000-of-00001`)."""
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[name]) for name in names])


def save_google_checkpoint(encoder_or_model, out_dir, vocab_file: Optional[str] = None,
                           do_lower_case: Optional[bool] = None, overwrite: bool = False) -> str:
    """Writes `bert_model.ckpt.{index,data-*}` with google-research/bert's names, `bert_config.json`, `vocab.txt`.

    The result is what google-research/bert's `run_classifier.py --init_checkpoint`, adapter-bert and Model
    Garden's TF1 -> TF2 converter read. Houlsby adapters are written under adapter-bert's names
    (`.../attention/output/adapters/weights1`, ...), a `BertClassifier` head as `output_weights`/`output_bias`, and a
    `BertMaskedLM`'s heads as run_pretraining.py's `cls/predictions/*` and `cls/seq_relationship/*`.
    Returns `out_dir`.
    """
    encoder = find_encoder(encoder_or_model)
    settings = _tokenizer_settings(encoder, vocab_file, do_lower_case)
    config = encoder.bert_config
    arrays = GOOGLE.export(_model_arrays(encoder_or_model), config)
    with atomic_directory(out_dir, overwrite) as tmp:
        save_tf_checkpoint(arrays, os.path.join(tmp, "bert_model.ckpt"))
        with open(os.path.join(tmp, "checkpoint"), "w", encoding="utf-8") as f:
            f.write('model_checkpoint_path: "bert_model.ckpt"\nall_model_checkpoint_paths: "bert_model.ckpt"\n')
        write_json(os.path.join(tmp, "bert_config.json"), config.to_google_dict())
        _copy_vocab(settings, tmp, config)
    return os.fspath(out_dir)


def hf_pretraining_architecture(paths) -> Optional[str]:
    """The transformers class that holds a model's pretraining heads, from its variable paths: BertForPreTraining
    (masked LM + next sentence), BertForMaskedLM (masked LM), or None (an encoder)."""
    heads = {path.split("/", 1)[0] for path in paths}
    if MASKED_LM not in heads:
        return None
    return "BertForPreTraining" if NEXT_SENTENCE in heads else "BertForMaskedLM"


def save_hf_checkpoint(encoder_or_model, out_dir, vocab_file: Optional[str] = None,
                       do_lower_case: Optional[bool] = None, overwrite: bool = False) -> str:
    """Writes `model.safetensors` (PyTorch layout), `config.json`, `vocab.txt`, `tokenizer_config.json`: loadable by
    `transformers.BertModel.from_pretrained(out_dir)`. An encoder is written under BertModel's names; a
    `BertMaskedLM` (run_pretraining.py) as transformers' `save_pretrained` writes BertForMaskedLM (or, with the
    next-sentence head, BertForPreTraining): the encoder under `bert.`, the heads as `cls.predictions.*` (the
    decoder tied to the word embeddings, not stored) and `cls.seq_relationship.*`, `architectures` naming the class.
    BertForMaskedLM has no pooler; ours is kept (`bert.pooler.*`: transformers reports it unused in that class and
    BertModel loads it). Returns `out_dir`."""
    from safetensors.numpy import save_file

    encoder = find_encoder(encoder_or_model)
    settings = _tokenizer_settings(encoder, vocab_file, do_lower_case)
    config = encoder.bert_config
    variables = _model_arrays(encoder_or_model)
    architecture = hf_pretraining_architecture(variables)
    hf_config = config.to_hf_dict()
    if architecture is None:
        arrays = HF.export(variables, config)
    else:
        arrays = {name if name.startswith("cls.") else "bert." + name: array
                  for name, array in hf_table(architecture).export(variables, config).items()}
        hf_config.update(architectures=[architecture], tie_word_embeddings=True)
    with atomic_directory(out_dir, overwrite) as tmp:
        save_file(arrays, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        write_json(os.path.join(tmp, "config.json"), hf_config)
        _copy_vocab(settings, tmp, config)
    return os.fspath(out_dir)


def save_keras_model(encoder_or_model, out_dir, vocab_file: Optional[str] = None,
                     do_lower_case: Optional[bool] = None, overwrite: bool = False) -> str:
    """Writes `model.keras` (the whole model, any adapters and heads included), `config.json`, `vocab.txt`.
    Returns `out_dir`."""
    encoder = find_encoder(encoder_or_model)
    settings = _tokenizer_settings(encoder, vocab_file, do_lower_case)
    with atomic_directory(out_dir, overwrite) as tmp:
        encoder_or_model.save(os.path.join(tmp, "model.keras"))
        write_json(os.path.join(tmp, "config.json"), encoder.bert_config.to_hf_dict())
        _copy_vocab(settings, tmp, encoder.bert_config)
    return os.fspath(out_dir)


WRITERS = {"google": save_google_checkpoint, "hf": save_hf_checkpoint, "keras": save_keras_model}
