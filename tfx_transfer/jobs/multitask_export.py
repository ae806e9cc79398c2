"""run_classifier.py --export_tasks: one TF Serving model for several tasks adapted from one base model.

    python run_classifier.py --export_tasks=sst2:runs/sst2,mrpc:runs/mrpc --export_dir=/models/glue \\
        [--pretrained=all-MiniLM-L6-v2 | --init_checkpoint=... | --hub_module_handle=...]

Each PATH is a finished run's --output_dir, its final/, or an adapter file (runs with --adaptation=adapters or
lora write final/adapter.safetensors). The base model is read once and each task's file is checked against it (the
fingerprint of the weights the task did not train). Every task's labels, text pairing and max_seq_length come from
its file (older files: from the task.json beside it, or the GLUE task's definition). The export
(adaptation.composition.BatchSplit, export/multitask_module.py) routes each example to its task in the graph, and
has a signature per task too; its model card lists the tasks, their files' SHA-256 and the metrics their runs
reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional

from absl import logging

from tfx_transfer.adaptation.composition import BatchSplit
from tfx_transfer.adaptation.files import read_adaptation
from tfx_transfer.data.glue import get_processor
from tfx_transfer.encoders.bert_encoder import BertEncoder
from tfx_transfer.export.serving import export_multitask_for_serving
from tfx_transfer.jobs.adapter_setup import named_adapter_files
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.model_card import ModelCard, sha256
from tfx_transfer.jobs.model_setup import resolve_model_source
from tfx_transfer.jobs.options import ClassifierOptions
from tfx_transfer.pretrained import DEFAULT_MODEL
from tfx_transfer.text.tokenizer import BertTokenizer

_OTHER_MODES = ("do_train", "do_eval", "do_predict", "do_export")


@dataclasses.dataclass(frozen=True)
class ExportedTask:
    """One NAME:PATH of --export_tasks, resolved: its adaptation file, how it reads text, and its run's facts."""

    name: str
    adapter_file: str
    pairs: bool
    max_seq_length: Optional[int]
    run: dict  # the task.json beside the file ({} when there is none)
    metrics: dict  # what the run's model card reported ({} when there is none)


def resolve_tasks(specs) -> List[ExportedTask]:
    """--export_tasks' NAME:PATH pairs, each resolved to its adaptation file (`adapter_setup.named_adapter_files`),
    read and checked for being one, with how it reads text and what its run recorded.

    Raises:
        FlagError: a bad pair or PATH (see `named_adapter_files`), or a file that is not an adaptation.
    """
    tasks = []
    for name, adapter_file in named_adapter_files(specs, "--export_tasks"):
        try:
            metadata, _ = read_adaptation(adapter_file)
        except ValueError as e:
            raise FlagError(f"--export_tasks={name}:{adapter_file}: {e}") from e
        directory = os.path.dirname(adapter_file)
        run = _json(os.path.join(directory, "task.json"))
        extra = metadata.get("extra") or {}
        tasks.append(ExportedTask(name, adapter_file, _reads_pairs(name, extra, run),
                                  extra.get("max_seq_length") or run.get("max_seq_length"), run,
                                  _json(os.path.join(directory, "model_card.json")).get("metrics") or {}))
    return tasks


def _json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _reads_pairs(name: str, extra: dict, run: dict) -> bool:
    for facts in (extra, run):
        if facts.get("pairs") is not None:
            return bool(facts["pairs"])
    task = extra.get("task") or run.get("task")
    try:
        return get_processor(task).pairs
    except (ValueError, TypeError):
        logging.warning("--export_tasks: task %r records neither whether it reads text pairs nor a known task name; "
                        "it is served single texts.", name)
        return False


def _base_encoder(o: ClassifierOptions, source):
    if source.hub_handle:
        return BertEncoder.from_hub(source.hub_handle)
    model = o.model
    return BertEncoder.from_pretrained(model.init_checkpoint or model.pretrained or DEFAULT_MODEL,
                                       config_file=model.bert_config_file, vocab_file=model.vocab_file,
                                       do_lower_case=model.do_lower_case)


def run(o: ClassifierOptions) -> int:
    """Exports the tasks --export_tasks names as one TF Serving model under --export_dir. Returns 0."""
    given = [f"--{mode}" for mode in _OTHER_MODES if getattr(o, mode)]
    if given:
        raise FlagError(f"--export_tasks exports finished runs; it does not combine with {', '.join(given)}.")
    if not o.output.export_dir:
        raise FlagError("--export_tasks needs --export_dir: the TF Serving model base directory.")
    tasks = resolve_tasks(o.export_tasks)
    source = resolve_model_source(o.model)
    base = _base_encoder(o, source)
    try:
        model = BatchSplit(base, {task.name: task.adapter_file for task in tasks})
    except ValueError as e:
        trained_from = {task.name: task.run["initialised_from"] for task in tasks if task.run.get("initialised_from")}
        hint = f" The runs record their base models: {trained_from}." if trained_from else ""
        raise FlagError(f"--export_tasks onto {source.description}: {e}{hint}") from e
    card = ModelCard("run_classifier.py", o)
    card.base_model(source)
    card.task = {"task": f"{len(tasks)} tasks on one base: {', '.join(task.name for task in tasks)}",
                 "tasks": [_card_entry(task, model) for task in tasks]}
    card.count_parameters(model)
    path = export_multitask_for_serving(
        model, o.output.export_dir, BertTokenizer.from_settings(source.tokenizer),
        pairs={task.name: task.pairs for task in tasks},
        max_seq_length={task.name: task.max_seq_length for task in tasks if task.max_seq_length},
        version=o.output.export_version, card=card)
    print(f"  exported {len(tasks)} tasks ({', '.join(task.name for task in tasks)}) for TF Serving: {path}",
          flush=True)
    return 0


def _card_entry(task: ExportedTask, model) -> dict:
    adaptation = model.tasks[model.task_index(task.name)]
    adapters = adaptation.metadata.get("adapters") or {}
    return {"name": task.name, "adapter_file": os.path.abspath(task.adapter_file),
            "sha256": sha256(task.adapter_file), "task": task.run.get("task") or adaptation.metadata["extra"].get(
                "task"), "labels": adaptation.labels, "pairs": task.pairs, "max_seq_length": task.max_seq_length,
            "adapter_kind": adapters.get("kind"), "trained_from": task.run.get("initialised_from"),
            "metrics": task.metrics}
