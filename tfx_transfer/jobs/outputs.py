"""Files a job writes into --output_dir: atomic text files and the `final/` model directory."""

from __future__ import annotations

import os
import shutil
from typing import Optional

import numpy as np
from absl import logging

from tfx_transfer.adaptation.files import save_adaptation
from tfx_transfer.export import export_for_serving
from tfx_transfer.io_utils import atomic_directory, inside, write_json, write_text  # noqa: F401  (the jobs' writer)
from tfx_transfer.jobs import distribution
from tfx_transfer.keras_compat import save_model_streaming
from tfx_transfer.plot import plot_training


def checkpoint_dir(output_dir: str) -> str:
    """`output_dir/checkpoints` on every worker: the chief writes it, all workers resume from it."""
    return inside(output_dir, "checkpoints")


def output_path(output_dir: str, name: str) -> str:
    """`output_dir/name`, refusing paths that symlinks lead outside output_dir. A non-chief worker of a
    multi-worker run gets a path in its private temporary directory instead: only the chief writes outputs."""
    if not distribution.is_chief():
        return os.path.join(distribution.worker_dir(), name)
    return inside(output_dir, name)


class OutputSpaceError(ValueError):
    """Not enough free disk space for what a run will write."""


def check_free_space(directory: str, model, copies: int = 4):
    """Refuses to start training when `directory`'s file system cannot hold `copies` training checkpoints (model
    weights + two Adam slots per trainable weight; two checkpoints are kept, one more is written before the oldest
    goes, plus `final/`).

    Raises:
        OutputSpaceError: naming the directory, the free and the needed space.
    """
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    slots = 2 * sum(int(np.prod(v.shape)) * 4 for v in model.trainable_weights)
    needed = copies * (weights + slots)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise OutputSpaceError(f"{directory}: {free / 2**20:.0f} MiB free, but checkpoints and the final model need "
                               f"about {needed / 2**20:.0f} MiB; free some space or choose another --output_dir.")


def save_final(model, output_dir: str, tokenizer, task: dict, adaptation: str, labels: Optional[list] = None,
               card=None) -> str:
    """Writes `output_dir/final/`: model.keras, config.json, vocab.txt, tokenizer_config.json (the tokenizer's
    settings), task.json, adapter.safetensors when only part of the model trained, and the model card (`card`, a
    `ModelCard`: README.md + model_card.json). The directory is a valid --init_checkpoint and `from_pretrained`
    input, and is replaced atomically. model.keras holds no optimizer state (the run's checkpoints/ keep it for
    resuming)."""
    if not distribution.is_chief():
        return None
    directory = inside(output_dir, "final")
    with atomic_directory(directory, overwrite=True) as tmp:
        _save_without_optimizer_state(model, os.path.join(tmp, "model.keras"))
        if hasattr(model.encoder, "bert_config"):  # a black-box Hub encoder has no config of ours
            write_json(os.path.join(tmp, "config.json"), model.encoder.bert_config.to_hf_dict())
        shutil.copyfile(tokenizer.vocab_file, os.path.join(tmp, "vocab.txt"))
        write_json(os.path.join(tmp, "tokenizer_config.json"), tokenizer.settings.to_tokenizer_config())
        write_json(os.path.join(tmp, "task.json"), {**task, "do_lower_case": tokenizer.do_lower_case,
                                                    "adaptation": adaptation})
        if adaptation != "full" and hasattr(model.encoder, "bert_config"):
            # The file describes its task on its own (a multi-task export reads these): name, pairs, length.
            save_adaptation(model, os.path.join(tmp, "adapter.safetensors"), labels=labels,
                            extra={key: task[key] for key in ("task", "pairs", "max_seq_length") if key in task})
        if card is not None:
            card.write(tmp)
    logging.info("Saved the final model to %s", directory)
    return directory


def _save_without_optimizer_state(model, path: str) -> None:
    """`model.save(path)` as an uncompiled model: no optimizer variables and no compile config. Every reader of
    final/ loads it with compile=False, Adam's two slots would make two thirds of the file (MiniLM: 273 MB instead
    of 91 MB), and `keras.saving.load_model(path)` then returns the model uncompiled instead of warning that the
    optimizer's variables are missing."""
    optimizer, compiled = getattr(model, "optimizer", None), getattr(model, "compiled", False)
    model.optimizer, model.compiled = None, False
    try:
        save_model_streaming(model, path)
    finally:
        model.optimizer, model.compiled = optimizer, compiled


def finish_training(model, result: dict, evaluation, card, task: dict, output_dir: str, tokenizer, adaptation: str,
                    labels: Optional[list] = None) -> str:
    """What every job does after --do_train: the best weights restored when evaluation during training chose them
    (`evaluation`, an `EvaluationSchedule` or None; recorded in task.json and the card), the training facts and the
    parameter counts on the card, then `final/` written (`save_final`). Returns final/'s path (None off the chief)."""
    best = evaluation.restore_best(model) if evaluation is not None else None
    if best:
        task["best_model"] = card.best = best
    card.record_training(result)
    card.count_parameters(model)
    return save_final(model, output_dir, tokenizer, task, adaptation, labels, card=card)


def export_and_plot(o, model, card, tokenizer, **export_options):
    """What every job does last, on the chief: with --export_dir (after --do_train or with --do_export) the TF Serving
    export (`export_for_serving(model, ..., **export_options)`, the card's parameter counts filled in when training
    did not), then with --plot_training the training plot. `o`: the job's options."""
    if not distribution.is_chief():
        return
    if o.output.export_dir and (o.do_train or o.do_export):
        if card.parameters is None:
            card.count_parameters(model)
        path = export_for_serving(model, o.output.export_dir, tokenizer, max_seq_length=o.max_seq_length,
                                  version=o.output.export_version, card=card, serving_dtype=o.output.serving_dtype,
                                  **export_options)
        print(f"  exported for TF Serving: {path}", flush=True)
    if o.output.plot_training:
        print(f"  training plot: {plot_training(o.output.output_dir)}", flush=True)
