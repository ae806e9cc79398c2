"""Several tasks' adaptations of one base encoder in one Keras model: AdapterHub's `BatchSplit` and `Parallel`
composition blocks (Pfeiffer et al. 2020, "AdapterHub: A Framework for Adapting Transformers"; Rücklé et al. 2021,
"AdapterDrop", for parallel multi-task inference), and its `Average` of adaptations' weights
(`average_adaptations`).

    tasks = {"sst2": "runs/sst2/final/adapter.safetensors", "mrpc": "runs/mrpc/final/adapter.safetensors"}
    model = BatchSplit(base_encoder, tasks)
    logits = model({**inputs, "task_ids": np.array([0, 1, 1])})   # [B, C_max]: each row through its own task
    both = Parallel(base_encoder, tasks)(inputs)                   # {"sst2": [B, 2], "mrpc": [B, 2]}

One copy of the base. The model holds the base encoder's weights once, frozen, and per task only the arrays its
adaptation holds (`files.adaptation_state`: adapters, LoRA / (IA)^3 / prefix weights, the LayerNorms it trained,
its head) as that task's `TaskWeights` layer. A task runs through a *template*: a task model of its architecture
(its `AdapterConfig` and head) called inside a `keras.StatelessScope` that replaces every template variable by the
base's value or the task's own. Templates hold no value anyone reads and are not tracked, so neither `.keras` files
nor SavedModels contain them, and a SavedModel's graph reads each base weight from its one copy. Tasks may differ in
adapter kind, size, layers and head; LoRA and (IA)^3 stay unmerged (merging would fold one task into the shared
kernels).

Exact: a row's outputs are its task model's outputs on that row alone (tests/test_composition.py). Compute: the base
runs once per task over that task's rows (BatchSplit: one pass over the batch in all; Parallel: one pass per task;
the layers below every task's first adapted one are not shared between tasks, as AdapterDrop's parallel inference
would: each task's pass reads the base through its own template).

Training: the base is frozen; `fit` trains the tasks' weights (BatchSplit: each row's loss reaches its own task,
with `SparseCategoricalCrossentropy(from_logits=True)` on the padded logits; Parallel: a loss per task output), and
`save_task` writes a task back as an adaptation file for every other tool (`load_adaptation`, exports, the switcher).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.adaptation.files import adaptation_state, build_task_model, check_base, read_adaptation
from tfx_transfer.adaptation.files import write_adaptation
from tfx_transfer.adaptation.members import head_paths
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.encoders.bert_encoder import INPUT_NAMES, BertEncoder
from tfx_transfer.layers.adapter_config import AdapterConfig

TASK_IDS = "task_ids"  # BatchSplit's extra input: int32 [B], each row's index into `task_names`
# What BatchSplit puts in the logit columns a row's task does not have: exp() of it underflows to exactly 0 after the
# softmax's max-subtraction, so probabilities and the cross-entropy of a row are its own task's.
ABSENT_CLASS_LOGIT = -1e9


@dataclasses.dataclass
class TaskAdaptation:
    """One task of a composition: its name, an adaptation's metadata (`files.adaptation_state`) and its arrays
    {variable path: array} (what the task changed or added on the base)."""

    name: str
    metadata: dict
    arrays: Dict[str, np.ndarray]

    @property
    def labels(self) -> Optional[List[str]]:
        return self.metadata.get("labels")

    @property
    def num_outputs(self) -> int:
        """The head's output width (1: regression)."""
        return int((self.metadata.get("head") or {}).get("num_classes", 0))


TaskSource = Union[str, os.PathLike, keras.Model, TaskAdaptation]


def read_tasks(base_encoder, tasks: Union[Mapping[str, TaskSource], Sequence[Tuple[str, TaskSource]]]
               ) -> List[TaskAdaptation]:
    """The tasks of a composition, in order, each checked against `base_encoder` (its architecture, and the
    fingerprint of the base weights the task did not train).

    Args:
        base_encoder: the pretrained `BertEncoder` the tasks were adapted from.
        tasks: {name: source} or (name, source) pairs; a source is an adaptation file (`save_adaptation`, a run's
            final/adapter.safetensors), a task model adapted from the base (e.g. a trained `BertClassifier` with
            adapters), or a `TaskAdaptation`.

    Raises:
        ValueError: no tasks, a repeated name, a task without a head, or a task made on another base.
    """
    pairs = list(tasks.items()) if isinstance(tasks, Mapping) else list(tasks)
    if not pairs:
        raise ValueError("A task composition needs at least one task.")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Task names must be unique; repeated: {repeated}.")
    result = []
    for name, source in pairs:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"Task name {name!r}: use a non-empty string without '/'.")
        if isinstance(source, TaskAdaptation):
            task = dataclasses.replace(source, name=name)
            where = f"task {name!r}"
        elif isinstance(source, keras.Model):
            metadata, arrays = adaptation_state(source, labels=getattr(source, "adaptation_metadata", {}).get(
                "labels"))
            task, where = TaskAdaptation(name, metadata, arrays), f"task {name!r} (a model in memory)"
        else:
            metadata, arrays = read_adaptation(source)
            task, where = TaskAdaptation(name, metadata, arrays), f"task {name!r} ({os.fspath(source)})"
        check_base(base_encoder, task.metadata, where)
        if task.metadata.get("members"):
            raise ValueError(f"{where} is a stack or fusion that refers to other adapters' files "
                             f"({', '.join(task.metadata['members'])}); a composition of tasks takes adaptations that "
                             "hold their arrays (serve it alone: export_for_serving / --do_export).")
        if not task.metadata.get("head"):
            raise ValueError(f"{where} has no task head (an encoder-only adaptation, e.g. run_pretraining.py's domain "
                             "adapters): a composition routes rows to task outputs.")
        result.append(task)
    return result


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TaskWeights(keras.layers.Layer):
    """The weights one task adds to a shared base: one variable per path of its adaptation (adapters, LayerNorms,
    head), named after the path with '/' -> '.'.

    Args:
        shapes: {variable path: shape}.
    """

    def __init__(self, shapes: Mapping[str, Sequence[int]], **kwargs):
        super().__init__(**kwargs)
        self.shapes = {path: tuple(int(d) for d in shape) for path, shape in shapes.items()}
        for index, (path, shape) in enumerate(self.shapes.items()):
            # An attribute each: TensorFlow's SavedModel tracks a Keras layer's variables through its attributes.
            setattr(self, f"weight_{index}", self.add_weight(name=path.replace("/", "."), shape=shape,
                                                             initializer="zeros"))
        self.built = True

    @property
    def values(self) -> Dict[str, keras.Variable]:
        """{variable path: the task's variable}."""
        return dict(zip(self.shapes, self.weights))

    def get_config(self):
        config = super().get_config()
        config["shapes"] = {path: list(shape) for path, shape in self.shapes.items()}
        return config


class _Untracked:
    """Holds objects out of Keras's and TensorFlow's tracking: the templates are never saved."""

    def __init__(self, value):
        self.value = value


class TaskComposition(keras.Model):
    """The base of `BatchSplit` and `Parallel`: one frozen base encoder, the tasks' own weights, one template per
    task (see the module docstring).

    Args:
        encoder: the base `BertEncoder` (frozen here; tracked, saved once).
        tasks: see `read_tasks`; `TaskAdaptation`s are taken as they are (already checked).

    Attributes:
        task_names: the tasks in order (BatchSplit's task ids index it).
        tasks: their `TaskAdaptation`s (metadata, and the arrays as read).
        task_weights: their `TaskWeights` layers.
    """

    def __init__(self, encoder, tasks, name=None, **kwargs):
        super().__init__(name=name or _default_name(type(self)), **kwargs)
        if not isinstance(encoder, BertEncoder):
            raise ValueError(f"A task composition needs a BertEncoder base, got {type(encoder).__name__} (unwrap a TF "
                             "Hub module with BertEncoder.from_hub).")
        if isinstance(tasks, (list, tuple)) and tasks and all(isinstance(t, TaskAdaptation) for t in tasks):
            adaptations = list(tasks)
        else:
            adaptations = read_tasks(encoder, tasks)
        self.encoder = encoder
        encoder.trainable = False
        self.task_names = [task.name for task in adaptations]
        self._tasks = _Untracked(adaptations)
        for index, task in enumerate(adaptations):  # attributes, not a list: TensorFlow's SavedModel tracks these
            setattr(self, f"task_{index}", TaskWeights({p: a.shape for p, a in task.arrays.items()},
                                                       name=f"task_{index}"))
        for weights, task in zip(self.task_weights, adaptations):
            for path, variable in weights.values.items():
                variable.assign(task.arrays[path])
        self._templates = _Untracked(_templates(encoder, adaptations))
        self._mappings = _Untracked([self._mapping(index) for index in range(len(adaptations))])
        self.built = True

    @property
    def tasks(self) -> List[TaskAdaptation]:
        return self._tasks.value

    @property
    def task_weights(self) -> List[TaskWeights]:
        return [getattr(self, f"task_{index}") for index in range(len(self.task_names))]

    def template(self, index: int):
        """Task `index`'s template task model (its architecture; its own values are never read)."""
        return self._templates.value[index]

    def _mapping(self, index: int) -> List[tuple]:
        """(template variable, the variable whose value replaces it) for every variable of task `index`'s template."""
        template, name = self.template(index), self.task_names[index]
        base, own = model_variables(self.encoder), self.task_weights[index].values
        template_variables = model_variables(template)
        unused = sorted(set(own) - set(template_variables))
        if unused:
            raise ValueError(f"Task {name!r} holds weights its model does not have: {unused[:5]}.")
        mapping = []
        for path, variable in template_variables.items():
            value = own[path] if path in own else base.get(path)
            if value is None:
                raise ValueError(f"Task {name!r}: its model's variable {path!r} is neither in its adaptation nor in "
                                 "the base encoder.")
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"Task {name!r}: {path!r} has shape {list(value.shape)}, its model's variable "
                                 f"{list(variable.shape)}.")
            mapping.append((variable, value))
        return mapping

    def task_call(self, index: int, inputs, training=None):
        """Task `index`'s model on `inputs` (the encoder's dict, [b, T] int32): its outputs, e.g. logits [b, C_t].
        The template reads the base's and the task's variables; dropout's random state advances as in a plain call."""
        template = self.template(index)
        with keras.StatelessScope(self._mappings.value[index]) as scope:
            outputs = template({key: inputs[key] for key in INPUT_NAMES}, training=training)
        weights = {id(v) for v in template.weights}
        for state in template.variables:  # the dropout layers' seed generators (not weights)
            if id(state) not in weights:
                updated = scope.get_current_value(state)
                if updated is not None:
                    state.assign(updated)
        return outputs

    def task_index(self, name: str) -> int:
        if name not in self.task_names:
            raise KeyError(f"Unknown task {name!r}; this model's tasks: {self.task_names}.")
        return self.task_names.index(name)

    def task_state(self, name: str):
        """(metadata, arrays) of task `name` with its current weights: `files.write_adaptation` writes them."""
        index = self.task_index(name)
        arrays = {path: np.asarray(variable) for path, variable in self.task_weights[index].values.items()}
        return self.tasks[index].metadata, arrays

    def save_task(self, name: str, path) -> None:
        """Writes task `name` (e.g. after training it here) as an adaptation file (`load_adaptation` reads it)."""
        write_adaptation(path, *self.task_state(name))

    def get_config(self):
        return {"name": self.name, "encoder": keras.saving.serialize_keras_object(self.encoder),
                "tasks": [{"name": task.name, "metadata": task.metadata, "shapes": weights.get_config()["shapes"]}
                          for task, weights in zip(self.tasks, self.task_weights)]}

    @classmethod
    def from_config(cls, config):
        """Rebuilds the architecture; `.keras` loading then assigns the base's and the tasks' weights."""
        encoder = keras.saving.deserialize_keras_object(config["encoder"])
        tasks = [TaskAdaptation(task["name"], task["metadata"],
                                {path: np.zeros(shape, np.float32) for path, shape in task["shapes"].items()})
                 for task in config["tasks"]]
        return cls(encoder, tasks, name=config.get("name"))


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BatchSplit(TaskComposition):
    """Rows of one batch routed to different tasks (AdapterHub's `BatchSplit`, with a task id per row instead of
    contiguous blocks), over one base.

    Inputs: the encoder's dict (input_word_ids, input_mask, input_type_ids int32 [B, T]) and "task_ids" int32 [B]
        (indices into `task_names`).
    Outputs: logits float32 [B, C_max], C_max the widest head: row b holds its task's C_t outputs in its first C_t
        columns (a regression task's score in column 0) and `ABSENT_CLASS_LOGIT` in the others.

    Each task's model runs once on its own rows (none when it has none); the rows are put back in order.
    """

    @property
    def width(self) -> int:
        return max(task.num_outputs for task in self.tasks)

    def call(self, inputs, training=None):
        task_ids = tf.cast(inputs[TASK_IDS], tf.int32)  # [B]
        rows = tf.dynamic_partition(tf.range(tf.shape(task_ids)[0]), task_ids, len(self.task_names))
        parts = []
        for index, indices in enumerate(rows):
            def run(index=index, indices=indices):
                logits = self.task_call(index, {key: tf.gather(inputs[key], indices) for key in INPUT_NAMES},
                                        training)  # [b, C_t]
                return pad_logits(tf.cast(logits, tf.float32), self.width)

            parts.append(tf.cond(tf.size(indices) > 0, run, lambda: tf.zeros([0, self.width], tf.float32)))
        return tf.dynamic_stitch(rows, parts)  # [B, C_max]

    def compute_output_spec(self, inputs, training=None):
        batch = inputs[TASK_IDS].shape[0]
        return keras.KerasTensor((batch, self.width), dtype="float32")


@keras.saving.register_keras_serializable(package="tfx_transfer")
class Parallel(TaskComposition):
    """Every task on every row (AdapterHub's `Parallel`): {task name: its model's outputs, e.g. logits [B, C_t]}.

    Inputs: the encoder's dict, int32 [B, T]. Train with a loss per task output (Keras's dict losses).
    """

    def call(self, inputs, training=None):
        return {name: self.task_call(index, inputs, training) for index, name in enumerate(self.task_names)}


def pad_logits(logits, width: int):
    """logits [b, C] -> [b, width], the extra columns `ABSENT_CLASS_LOGIT`."""
    extra = width - logits.shape[-1]
    if extra == 0:
        return logits
    return tf.pad(logits, [[0, 0], [0, extra]], constant_values=ABSENT_CLASS_LOGIT)


def _templates(encoder, tasks: List[TaskAdaptation]) -> list:
    """A template task model per task; tasks of one adapter architecture share a template encoder."""
    encoders, templates = {}, []
    for task in tasks:
        adapters = task.metadata.get("adapters")
        key = repr(sorted(adapters.items())) if adapters else None
        if key not in encoders:
            encoders[key] = BertEncoder.from_bert_config(
                encoder.bert_config, adapters=AdapterConfig.from_dict(adapters) if adapters else None,
                dtype=encoder.dtype_policy.name)
        model = build_task_model(encoders[key], task.metadata)
        if model is encoders[key] or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            raise ValueError(f"Task {task.name!r}: a composition needs a head with one output [B, C] (a sentence "
                             f"classifier or regressor), not {type(model).__name__}.")
        templates.append(model)
    return templates


def _default_name(cls) -> str:
    return {"BatchSplit": "batch_split", "Parallel": "parallel"}.get(cls.__name__, "task_composition")


def average_adaptations(sources: Sequence, weights: Optional[Sequence[float]] = None, include_head: bool = True,
                        normalize: bool = True):
    """AdapterHub's `Average` (`average_adapter`, "linear"): one adaptation whose arrays are the weighted mean of
    several adaptations of one architecture on one base, e.g. adapters of related tasks, domains or seeds
    (Wortsman et al. 2022's "model soups" for adapters; Chronopoulou et al. 2023, "AdapterSoup").

    Args:
        sources: adaptation files or (metadata, arrays) pairs (`files.adaptation_state`), at least two.
        weights: one per source (default equal); with `normalize` they are scaled to sum to 1.
        include_head: average the heads too (they must have one config and one label list); False leaves the head
            out, and the result is an encoder-only adaptation (put a new head on it).

    Returns:
        (metadata, arrays), for `files.write_adaptation` or a composition (`TaskAdaptation`).

    Note: every array is averaged as it is, as AdapterHub's "linear" strategy does; for LoRA that averages the A
    and B factors, which is not the average of the updates B A.

    Raises:
        ValueError: fewer than two sources, a weight count that does not match, adaptations of different bases,
            adapter architectures, arrays or heads.
    """
    states = [source if isinstance(source, tuple) else read_adaptation(source) for source in sources]
    if len(states) < 2:
        raise ValueError("average_adaptations needs at least two adaptations.")
    weights = [1.0] * len(states) if weights is None else [float(w) for w in weights]
    if len(weights) != len(states):
        raise ValueError(f"average_adaptations: {len(weights)} weights for {len(states)} adaptations.")
    if normalize:
        if sum(weights) == 0:
            raise ValueError("average_adaptations: the weights sum to 0; they cannot be normalised.")
        weights = [w / sum(weights) for w in weights]
    first, first_arrays = states[0]

    def encoder_shapes(metadata, arrays):  # the head's variables left out
        head = head_paths(metadata, arrays)
        return {p: a.shape for p, a in arrays.items() if p not in head}

    for position, (metadata, arrays) in enumerate(states[1:], start=2):
        for key, what in (("base_fingerprint", "base model"), ("base_config", "base architecture"),
                          ("adapters", "adapter architecture")):
            if metadata.get(key) != first.get(key):
                raise ValueError(f"average_adaptations: adaptation {position} has another {what} than the first.")
        if encoder_shapes(metadata, arrays) != encoder_shapes(first, first_arrays):
            raise ValueError(f"average_adaptations: adaptation {position} holds other arrays than the first (its "
                             "strategy trained other weights).")
        if include_head and (metadata.get("head"), metadata.get("labels")) != (first.get("head"), first.get("labels")):
            raise ValueError(f"average_adaptations: adaptation {position} has another head or other labels than the "
                             "first; pass include_head=False to average the encoder's adaptation only.")
    left_out = set() if include_head else head_paths(first, first_arrays)
    averaged = {path: sum(w * arrays[path].astype(np.float64) for w, (_, arrays) in zip(weights, states)).astype(
        first_arrays[path].dtype) for path in first_arrays if path not in left_out}
    metadata = dict(first, extra={**(first.get("extra") or {}), "averaged": {"of": len(states), "weights": weights}})
    if not include_head:
        metadata.update(head=None, labels=None)
    return metadata, averaged
