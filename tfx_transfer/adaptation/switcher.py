"""Many tasks on one base model in one process: switch the active adaptation without reloading the base.

    switcher = AdaptationSwitcher(BertEncoder.from_pretrained("all-MiniLM-L6-v2"))
    switcher.add("sst2", "sst2.adapter.safetensors")
    switcher.add("mrpc", "mrpc.adapter.safetensors")
    model = switcher.activate("sst2")          # a BertClassifier; its encoder is shared by all tasks

All tasks share one encoder (one copy of the base weights). Each task keeps only its own arrays (adapters,
LayerNorms, head...) in memory; `activate` assigns them, restoring the base values of anything another task
changed. Tasks must share the adapter architecture (kind, size, layers), since they share one graph.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from tfx_transfer.adaptation.files import adapted_encoder, assign_arrays, build_task_model, check_base, read_adaptation
from tfx_transfer.adaptation.files import with_members
from tfx_transfer.checkpoints.loader import model_variables


class AdaptationSwitcher:
    """Holds one shared encoder and any number of task adaptations. See the module docstring."""

    def __init__(self, base_encoder):
        self.base_encoder = base_encoder
        self.encoder = None
        self.adapters = None
        self.tasks: Dict[str, dict] = {}
        self._pristine: Dict[str, np.ndarray] = {}
        self.active = None

    def add(self, name: str, path, members=None) -> None:
        """Reads an adaptation file; checks it belongs to this base; builds its head (sharing the encoder). A fusion's
        or a stack's file needs the files of the adapters it composes: `members` {name: path}."""
        if name in self.tasks:
            raise ValueError(f"Task {name!r} is already added.")
        metadata, arrays = read_adaptation(path)
        check_base(self.base_encoder, metadata, str(path))
        arrays = with_members(self.base_encoder, metadata, arrays, members, str(path))
        if self.encoder is None:
            self.encoder = adapted_encoder(self.base_encoder, metadata["adapters"])
            self.adapters = metadata["adapters"]
        elif metadata["adapters"] != self.adapters:
            raise ValueError(f"Task {name!r} uses adapters {metadata['adapters']}, but the tasks already added use "
                             f"{self.adapters}; tasks sharing a base must share the adapter architecture.")
        model = build_task_model(self.encoder, metadata)
        encoder_variables = model_variables(self.encoder)
        encoder_arrays = {p: a for p, a in arrays.items() if p in encoder_variables}
        for p in encoder_arrays:
            self._pristine.setdefault(p, np.asarray(encoder_variables[p]).copy())
        assign_arrays(model, {p: a for p, a in arrays.items() if p not in encoder_variables}, str(path))
        model.adaptation_metadata = metadata
        self.tasks[name] = {"model": model, "arrays": encoder_arrays, "metadata": metadata}

    def activate(self, name: str):
        """Makes `name` the active task and returns its model."""
        if name not in self.tasks:
            raise KeyError(f"Unknown task {name!r}; added tasks: {sorted(self.tasks)}.")
        task = self.tasks[name]
        variables = model_variables(self.encoder)
        for path, array in self._pristine.items():
            if path not in task["arrays"]:
                variables[path].assign(array)
        for path, array in task["arrays"].items():
            variables[path].assign(array)
        self.active = name
        return task["model"]

    def task_bytes(self, name: str) -> int:
        """Memory a task adds: its encoder arrays plus its head."""
        task = self.tasks[name]
        head = sum(int(np.prod(v.shape)) * 4 for p, v in model_variables(task["model"]).items()
                   if p not in model_variables(self.encoder))
        return sum(a.nbytes for a in task["arrays"].values()) + head
