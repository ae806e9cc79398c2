"""`export_for_serving`: a versioned, atomic TF Serving SavedModel that takes raw text, with warmup requests.

    from tfx_transfer.export import export_for_serving
    path = export_for_serving(model, "/models/sst2", tokenizer, labels=["negative", "positive"], max_seq_length=128)
    # -> /models/sst2/1/{saved_model.pb, variables/, assets/vocab.txt, assets.extra/tf_serving_warmup_requests}

LoRA models are merged first (one SavedModel per task is what TF Serving loads); adapters stay as layers.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import tensorflow as tf
from absl import logging

from tfx_transfer.adaptation.surgery import merge_adaptation
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.encoders.bert_encoder import find_encoder
from tfx_transfer.export.classifier_module import ClassifierServingModule
from tfx_transfer.export.multitask_module import MultiTaskServingModule, served_tasks
from tfx_transfer.export.squad_module import SquadServingModule
from tfx_transfer.export.tagger_module import TaggerServingModule
from tfx_transfer.export.versioning import new_version_directory
from tfx_transfer.keras_compat import save_for_sessions
from tfx_transfer.layers.adapter_config import mergeable

WARMUP_TEXTS = ["A short warmup sentence.", "Warmup request number two, somewhat longer than the first one, so that a "
                "second length is traced as well before real traffic arrives."]


def _merged(model):
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "adapters"):  # a black-box Hub encoder: nothing to merge
        return model
    encoder = find_encoder(model)
    if mergeable(encoder.adapters):
        logging.info("Merging the %s adaptation into the frozen kernels for serving.", encoder.adapters.kind)
        return merge_adaptation(model)
    return model


SERVING_DTYPES = {"float32": None, "bfloat16": "mixed_bfloat16"}  # --serving_dtype -> the Keras dtype policy


def computing_in(model, serving_dtype: str = "float32"):
    """`model`, or for serving_dtype="bfloat16" a copy with the same weights (float32 variables) whose encoder computes
    under Keras's mixed_bfloat16 policy: matmuls in bfloat16 (on this CPU's AVX512-BF16, batches of 32 served 1.25x
    faster than in float32 and single requests no faster: bench/results/serving_bf16.md), logits in float32 (the
    heads compute in float32).

    Raises:
        ValueError: an unknown serving_dtype, or a black-box Hub encoder (no config to rebuild).
    """
    if serving_dtype not in SERVING_DTYPES:
        raise ValueError(f"serving_dtype={serving_dtype!r}: choose {' or '.join(SERVING_DTYPES)}.")
    policy = SERVING_DTYPES[serving_dtype]
    if policy is None:
        return model
    encoder = getattr(model, "encoder", model)
    if not hasattr(encoder, "bert_config"):
        raise ValueError(f"serving_dtype={serving_dtype}: a black-box Hub encoder cannot be rebuilt in another "
                         "precision (unwrap it with BertEncoder.from_hub).")
    config = model.get_config()
    if model is encoder:
        config["dtype"] = policy
    else:
        config["encoder"] = dict(config["encoder"], config=dict(config["encoder"]["config"], dtype=policy))
    copy = type(model).from_config(config)
    values = model_variables(model)
    for path, variable in model_variables(copy).items():
        variable.assign(values[path])
    logging.info("Serving in %s (Keras policy %s).", serving_dtype, policy)
    return copy


def write_warmup_requests(directory: str, requests) -> Optional[str]:
    """assets.extra/tf_serving_warmup_requests: TFRecord of PredictionLog protos (needs tensorflow-serving-api).

    `requests`: list of (signature_name, {input name: list of strings}). Returns the file, or None when the optional
    dependency is missing (TF Serving then just starts cold)."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        logging.warning("tensorflow-serving-api is not installed: no warmup requests written "
                        "(pip install tensorflow-serving-api).")
        return None
    extra = os.path.join(directory, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def export_for_serving(model, export_base: str, tokenizer, labels: Optional[Sequence[str]] = None,
                       max_seq_length: int = 128, pairs: bool = False, version: Optional[int] = None,
                       warmup: bool = True, task: str = "classifier", card=None, serving_dtype: str = "float32",
                       **squad_options) -> str:
    """Exports `model` (a `BertClassifier`, a `BertSpanLabeler` with task="squad", or a `BertTokenClassifier` with
    task="tagger") under `export_base/<version>`.

    Args:
        model: the trained task model. tokenizer: its `BertTokenizer` (vocab + casing).
        labels: class names (None: regression; a tagger's tags). max_seq_length: truncation length (a tagger's
            window). pairs: the task reads two texts.
        version: explicit version (must not exist); default the next integer. warmup: write warmup requests.
        task: "classifier", "squad" or "tagger" (export/tagger_module.py); squad_options go to
            `SquadServingModule` (doc_stride, max_query_length, ...).
        card: an object with `write(directory)` (the jobs' `ModelCard`): README.md and model_card.json beside
            saved_model.pb (TF Serving reads only the SavedModel's own files).
        serving_dtype: "float32", or "bfloat16" (`computing_in`: the encoder's matmuls in bfloat16).

    Returns:
        The version directory.
    """
    model = computing_in(_merged(model), serving_dtype)
    if task == "classifier":
        module = ClassifierServingModule(model, tokenizer, max_seq_length, labels, pairs, tokenizer.vocab_file)
        inputs = {"text": WARMUP_TEXTS}
        if pairs:
            inputs["text_b"] = list(reversed(WARMUP_TEXTS))
    elif task == "squad":
        module = SquadServingModule(model, tokenizer, max_seq_length, tokenizer.vocab_file, **squad_options)
        inputs = {"question": ["What is warming up?", "Why?"], "context": WARMUP_TEXTS}
    elif task == "tagger":
        module = TaggerServingModule(model, tokenizer, max_seq_length, labels, tokenizer.vocab_file)
        inputs = {"text": WARMUP_TEXTS}
    else:
        raise ValueError(f"task={task!r}: choose 'classifier', 'squad' or 'tagger'.")
    return _save(module, export_base, version, inputs if warmup else None, card)


def _save(module, export_base: str, version: Optional[int], warmup_inputs: Optional[dict], card) -> str:
    """Writes `module` with its signatures as the next (or the given) version under `export_base`, atomically, with
    a `serving_default` warmup request of `warmup_inputs` and the model card. Returns the version directory."""
    signatures = module.signatures()
    with new_version_directory(export_base, version) as (tmp, number):
        save_for_sessions(module, tmp, signatures)  # loadable by TF Serving's session-based loader
        if warmup_inputs is not None:
            write_warmup_requests(tmp, [("serving_default", warmup_inputs)])
        if card is not None:
            card.write(tmp)
    path = os.path.join(os.path.abspath(export_base), str(number))
    logging.info("Exported version %d to %s", number, path)
    return path


def export_multitask_for_serving(model, export_base: str, tokenizer, pairs=None, max_seq_length=None,
                                 version: Optional[int] = None, warmup: bool = True, card=None) -> str:
    """Exports a `BatchSplit` (adaptation/composition.py: one base encoder, several tasks' adapters and heads) as one
    TF Serving model under `export_base/<version>` that routes each example to its task in the graph
    (export/multitask_module.py: `serving_default(task, text[, text_b])`, `from_ids`, and a signature per task).

    Args:
        model: the `BatchSplit`. tokenizer: the base's `BertTokenizer`.
        pairs, max_seq_length: per task ({name: value}) or for all; default: what each task's adaptation records
            (run_classifier.py writes both), else single texts and 128 (`multitask_module.served_tasks`).
        version, warmup, card: as `export_for_serving`; the warmup requests send every task a text.

    Returns:
        The version directory.
    """
    tasks = served_tasks(model, pairs, max_seq_length)
    module = MultiTaskServingModule(model, tokenizer, tasks, tokenizer.vocab_file)
    names = [task.name for task in tasks]
    texts = [WARMUP_TEXTS[i % len(WARMUP_TEXTS)] for i in range(len(names))]
    inputs = {"task": names, "text": texts}
    if module.pairs:
        inputs["text_b"] = list(reversed(texts))
    logging.info("Exporting %d tasks on one base: %s", len(names), ", ".join(names))
    return _save(module, export_base, version, inputs if warmup else None, card)
