"""The model card written with every `final/` and every export: README.md (for people) and model_card.json (for
programs) with the same facts.

    card = ModelCard("run_classifier.py", options)
    card.base_model(source)                         # name, path, SHA-256 of the weights
    card.data_file("train", path, rows)             # each data file with its row count and SHA-256
    card.load_report, card.training, card.best, card.metrics = report, result, best.summary(), results
    card.write(directory)                           # README.md + model_card.json, each replaced atomically

What it records: the base model and where it came from, the data, the full command line and the resolved options
(every flag's value, defaults included), the trainable-parameter count, the checkpoint load report, the training
run (steps, speed, the best-model choice), the metrics, the library versions and the date. After Mitchell et al.
(2019), "Model Cards for Model Reporting", and Hugging Face's `Trainer.create_model_card`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
from typing import Dict, List, Optional

import numpy as np

from tfx_transfer.io_utils import write_json, write_text

CARD_FILES = ("README.md", "model_card.json")
LIBRARIES = ("tfx_transfer", "tensorflow", "keras", "tensorflow-text", "tensorflow-hub", "keras-hub", "numpy")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sha256(path: str) -> str:
    """SHA-256 of a file, or of a directory's files (relative path and bytes, in sorted order)."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, names in sorted(os.walk(path)):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                digest.update(os.path.relpath(full, path).encode("utf-8") + b"\0")
                _update(digest, full)
    else:
        _update(digest, path)
    return digest.hexdigest()


def _update(digest, path):
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def library_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _plain(value):
    """Options as JSON: tuples -> lists, nested dataclasses -> dicts."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class ModelCard:
    """Facts about a run, gathered as it goes; `write` renders them (see the module docstring)."""

    def __init__(self, script: str, options):
        self.script = script
        self.options = _plain(options)
        self.command = [script] + list(options.command_line)
        self.base: Dict[str, object] = {}
        self.data: List[Dict[str, object]] = []
        self.task: Dict[str, object] = {}
        self.load_report: Optional[str] = None
        self.training: Optional[dict] = None
        self.best: Optional[dict] = None
        self.metrics: Dict[str, float] = {}
        self.evaluation: Optional[dict] = None  # {"examples", "seconds", "examples_per_s"} of the dev evaluation
        self.parameters: Optional[dict] = None

    def base_model(self, source):
        """`source`: the job's ModelSource (description = the flag that named it, weights path, tokenizer)."""
        path = os.path.abspath(source.weights_path)
        self.base = {"name": source.description, "path": path, "sha256": sha256(path) if os.path.exists(path) else
                     None, "tokenizer": {"vocab_file": source.tokenizer.vocab_file,
                                         "do_lower_case": source.tokenizer.do_lower_case,
                                         "source": source.tokenizer.source}}

    def data_file(self, role: str, path: str, rows: int, checksum: Optional[str] = None):
        """Records the file a role (train, dev, ...) read: its path, rows and SHA-256 (computed unless given)."""
        self.data_files(role, [(path, rows, checksum)])

    def data_files(self, role: str, files):
        """Records the files of a role: (path, rows, SHA-256 or None to compute it) each (a streamed corpus)."""
        entries = [{"role": role, "path": os.path.abspath(path), "rows": int(rows),
                    "sha256": checksum or sha256(path)} for path, rows, checksum in files]
        self.data = [d for d in self.data if d["role"] != role] + entries

    def record_training(self, result: dict):
        """`trainer.train`'s result: steps, where it resumed, training seconds and speed (overall and after the first
        20 steps), the first step's time, the mean padded length of the batches, whether it stopped early."""
        self.training = {key: result.get(key) for key in ("steps", "resumed_from", "seconds", "examples_per_s",
                                                          "steady_examples_per_s", "first_step_seconds",
                                                          "mean_padded_length", "stopped_early")}

    def record_evaluation(self, examples: int, seconds: float):
        """How long the dev evaluation took, from raw text (tokenisation included) to metrics."""
        self.evaluation = {"examples": examples, "seconds": seconds,
                           "examples_per_s": examples / seconds if seconds else None}

    def count_parameters(self, model):
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        total = sum(int(np.prod(v.shape)) for v in model.weights)
        self.parameters = {"trainable": trainable, "total": total,
                           "trainable_fraction": trainable / total if total else 0.0}

    def to_json(self) -> dict:
        return {"script": self.script, "command": self.command, "task": self.task, "base_model": self.base,
                "data": self.data, "options": self.options, "parameters": self.parameters,
                "load_report": self.load_report, "training": self.training, "best_model": self.best,
                "metrics": self.metrics, "evaluation": self.evaluation, "libraries": library_versions(), "date": utc_now()}

    def write(self, directory: str):
        """README.md and model_card.json in `directory` (each written atomically)."""
        facts = self.to_json()
        write_json(os.path.join(directory, "model_card.json"), facts)
        write_text(os.path.join(directory, "README.md"), render_markdown(facts))


def _table(rows, header=("", "")) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def render_markdown(facts: dict) -> str:
    task, base, training, best = facts["task"], facts["base_model"], facts["training"], facts["best_model"]
    title = task.get("task", "model")
    lines = [f"# {title} - fine-tuned with tfx_transfer", ""]
    labels = task.get("labels")
    lines += [f"{facts['script']} trained this model from {base.get('name', '?')}"
              f"{' with --adaptation=' + facts['options']['model']['adaptation'] if facts['options'] else ''}"
              f"{'; labels: ' + ', '.join(map(str, labels)) if labels else ''}.", ""]
    if task.get("tasks"):  # a multi-task export (jobs/multitask_export.py)
        lines += ["## Tasks", "", "Requests name one of these per example (`task`); each also has its own signature.",
                  ""] + _table([(t["name"], t.get("task"), ", ".join(map(str, t["labels"] or [])) or "(regression)",
                                 t["pairs"], t["max_seq_length"], t["adapter_kind"],
                                 ", ".join(f"{k} {v:.4g}" for k, v in (t.get("metrics") or {}).items()
                                           if isinstance(v, float)), t["sha256"][:16])
                                for t in task["tasks"]],
                               ("name", "task", "labels", "pairs", "max length", "adaptation", "its run's metrics",
                                "adapter file sha256")) + [""]
    lines += ["## Base model", ""] + _table([("name", base.get("name")), ("path", base.get("path")),
                                              ("sha256", base.get("sha256")),
                                              ("tokenizer", json.dumps(base.get("tokenizer")))]) + [""]
    lines += ["## Data", ""] + _table([(d["role"], d["path"], d["rows"], d["sha256"]) for d in facts["data"]],
                                      ("split", "file", "rows", "sha256")) + [""]
    lines += ["## Training", "", "```", " ".join(shlex.quote(a) for a in facts["command"]), "```", ""]
    if facts["parameters"]:
        p = facts["parameters"]
        lines.append(f"- trainable parameters: {p['trainable']:,} of {p['total']:,} "
                     f"({100 * p['trainable_fraction']:.2f}%)")
    if training:
        resumed = f" (resumed at step {training['resumed_from']})" if training["resumed_from"] else ""
        lines.append(f"- {training['steps']} steps{resumed}, {training['examples_per_s']:.1f} examples/s")
        if training.get("first_step_seconds") is not None:
            padded = training.get("mean_padded_length")
            lines.append(f"- first step after {training['first_step_seconds']:.1f} s" + (
                f"; batches padded to {padded:.1f} tokens on average" if padded is not None else ""))
    if best:
        lines.append(f"- final/ is the best of {best['evaluations']} evaluations during training: {best['metric']} = "
                     f"{best['value']:.5g} at step {best['step']}"
                     f"{' (training stopped early)' if best['stopped_early'] else ''}")
    elif training:
        lines.append("- final/ holds the weights at the end of training (no evaluation during training)")
    lines.append("")
    if facts["metrics"]:
        lines += ["## Results", ""] + _table([(k, f"{v:.6g}" if isinstance(v, float) else v)
                                              for k, v in facts["metrics"].items()], ("metric", "value")) + [""]
    if facts["load_report"]:
        lines += ["## Load report", "", "```text", facts["load_report"].rstrip(), "```", ""]
    lines += ["## Options", "", "Every option of the run, defaults included (model_card.json has them too).", "",
              "```json", json.dumps(facts["options"], indent=1), "```", ""]
    lines += ["## Environment", ""] + _table(list(facts["libraries"].items()), ("library", "version"))
    lines += ["", f"Written {facts['date']}.", ""]
    return "\n".join(lines)
