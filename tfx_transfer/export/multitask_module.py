"""A TF Serving SavedModel that holds one base encoder and several tasks' adaptations and heads (a `BatchSplit`,
adaptation/composition.py) and takes raw text with a task name per example.

Signatures (`saved_model_cli show --all` lists them):
  serving_default(task [B] string, text [B] string[, text_b [B] string]) ->
      task [B] string (echoed), label [B] string ("" for a regression task), label_id [B] int32 (-1 for
      regression), score [B] float32 (the label's probability; a regression task's prediction),
      probabilities [B, C_max] float32 (the task's C_t class probabilities, then zeros; zeros for regression)
  from_ids(task [B] string, input_word_ids, input_mask, input_type_ids [B, T] int32) -> the same
  <task name>(text[, text_b]) -> that task alone, with a single-task export's outputs: probabilities [B, C_t],
      logits, label_id, label (score [B] for regression)
`text_b` is an input when any task reads text pairs; tasks of single texts ignore it (send ""). The rows of a batch
are routed in the graph: each task packs its own rows with its own max_seq_length and runs its adapters and head on
them only, over the one base (a task with no rows in the batch costs nothing). An unknown task name fails the
request with INVALID_ARGUMENT naming the known tasks. Loading needs the TF Text ops (`import tensorflow_text`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import List, Optional, Sequence

import tensorflow as tf

from tfx_transfer.export.classifier_module import (IDS, KEPT_WHOLE, UntrackedFunctions, label_outputs,
                                                    model_forward)
from tfx_transfer.export.inputs import checked_texts
from tfx_transfer.text.packer import BertPacker


@dataclasses.dataclass(frozen=True)
class ServedTask:
    """How one task of a multi-task export reads its input and names its outputs.

    Attributes:
        name: the task's name (its value in the `task` input, and its signature's name).
        labels: class names in the head's order; None for a regression task.
        pairs: the task reads two texts (text, text_b).
        max_seq_length: its truncation length.
    """

    name: str
    labels: Optional[Sequence[str]]
    pairs: bool
    max_seq_length: int


RESERVED_SIGNATURES = ("serving_default", "from_ids")



def served_tasks(model, pairs=None, max_seq_length=None) -> List[ServedTask]:
    """How each task of `model` (a `BatchSplit`) is served: its labels from its adaptation's metadata (class names
    "0", "1", ... when it has none; None for a regression head), and whether it reads pairs and its max_seq_length
    from `pairs` / `max_seq_length` ({task: value}, or one value for every task), else from the metadata's "extra"
    (what run_classifier.py records), else single texts and 128.

    Raises:
        ValueError: a task name no TF Serving signature can have, or a value given for an unknown task.
    """
    result = []
    for name in dict(pairs or {}) if isinstance(pairs, dict) else {}:
        model.task_index(name)
    for name in dict(max_seq_length or {}) if isinstance(max_seq_length, dict) else {}:
        model.task_index(name)
    for task in model.tasks:
        if task.name in RESERVED_SIGNATURES or not re.fullmatch(r"[A-Za-z0-9_.\-]+", task.name):
            raise ValueError(f"Task name {task.name!r} cannot name a serving signature: use letters, digits, '_', "
                             f"'.', '-', and not {' or '.join(RESERVED_SIGNATURES)}.")
        extra = task.metadata.get("extra") or {}
        reads_pairs = pairs.get(task.name) if isinstance(pairs, dict) else pairs
        length = max_seq_length.get(task.name) if isinstance(max_seq_length, dict) else max_seq_length
        labels = None if task.num_outputs == 1 else (task.labels or [str(i) for i in range(task.num_outputs)])
        result.append(ServedTask(task.name, labels,
                                 bool(reads_pairs if reads_pairs is not None else extra.get("pairs", False)),
                                 int(length or extra.get("max_seq_length") or 128)))
    return result


class MultiTaskServingModule(tf.Module):
    """Holds the `BatchSplit` model, the tokenizer and each task's packer and label names; see the module
    docstring."""

    def __init__(self, model, tokenizer, tasks: Sequence[ServedTask], vocab_file: str):
        super().__init__(name="multitask_serving")
        if [task.name for task in tasks] != list(model.task_names):
            raise ValueError(f"Served tasks {[t.name for t in tasks]} must be the model's, in its order: "
                             f"{list(model.task_names)}.")
        self.model = model
        self.wordpiece = tokenizer._wordpiece
        self._tokenizer = tokenizer
        self._tasks = list(tasks)
        self._packers = [BertPacker.for_tokenizer(tokenizer, task.max_seq_length, pad_to_max_length=False)
                         for task in tasks]
        self.label_names = [tf.constant(list(task.labels or []), tf.string) for task in tasks]
        self.width = model.width
        names = [task.name for task in tasks]
        self.task_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(names), tf.range(len(names), dtype=tf.int32)), -1)
        self._unknown_task = f"unknown task name; the tasks of this model are {', '.join(names)}"
        self.pairs = any(task.pairs for task in tasks)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False, name="do_lower_case")
        self._forward = UntrackedFunctions([model_forward(functools.partial(model.task_call, index, training=False))
                                            for index in range(len(tasks))])
        # Each task's tokenisation and packing, kept whole like its model: the routed signature calls it from two
        # branches (one task, mixed batch); inlined there, the first request's graph optimisation took 9.8-11.2 s
        # instead of 5.9-7.1 (tiny three-task export, session loader).
        texts = [tf.TensorSpec([None], tf.string)] * 2
        self._packing = UntrackedFunctions([tf.function(functools.partial(self._pack, index), input_signature=texts,
                                                        autograph=False, experimental_attributes=KEPT_WHOLE)
                                            for index in range(len(tasks))])

    # ------------------------------------------------------------------ one task's rows
    def _logits(self, index: int, inputs):
        """Task `index`'s logits [b, C_t] (float32) on encoder inputs: one traced function per task, which every
        signature calls, so the SavedModel holds each task's graph once (not once per signature)."""
        return self._forward.functions[index](inputs)

    def _row_outputs(self, index: int, inputs) -> dict:
        """The routed signature's outputs for rows that all belong to task `index`."""
        logits = self._logits(index, inputs)
        batch = tf.shape(logits)[0]
        if self._tasks[index].labels is None:
            return {"label": tf.fill([batch], ""), "label_id": tf.fill([batch], -1), "score": logits[:, 0],
                    "probabilities": tf.zeros([batch, self.width])}
        outputs = label_outputs(logits, self.label_names[index])
        probabilities = outputs["probabilities"]
        return {"label": outputs["label"], "label_id": outputs["label_id"],
                "score": tf.reduce_max(probabilities, axis=-1),
                "probabilities": tf.pad(probabilities, [[0, 0], [0, self.width - probabilities.shape[-1]]])}

    def _empty_outputs(self) -> dict:
        return {"label": tf.zeros([0], tf.string), "label_id": tf.zeros([0], tf.int32), "score": tf.zeros([0]),
                "probabilities": tf.zeros([0, self.width])}

    def _task_outputs(self, index: int, inputs) -> dict:
        """A per-task signature's outputs: a single-task export's."""
        logits = self._logits(index, inputs)
        if self._tasks[index].labels is None:
            return {"score": logits[:, 0]}
        return label_outputs(logits, self.label_names[index])

    def _pack(self, index: int, text, text_b):
        segments = [self._tokenizer.tokenize(text)]
        if self._tasks[index].pairs:
            segments.append(self._tokenizer.tokenize(text_b))
        return self._packers[index](segments)

    # ------------------------------------------------------------------ routing
    def _routed(self, task, rows_inputs) -> dict:
        """Runs each task on its rows (`rows_inputs(index, rows)` -> its encoder inputs) and returns the rows' outputs
        in order: a batch of one task (every batch-1 request) goes straight to it; a mixed batch is partitioned by
        task and put back together."""
        index = self.task_table.lookup(task)
        with tf.control_dependencies([tf.debugging.assert_non_negative(index, message=self._unknown_task)]):
            index = tf.identity(index)
        batch = tf.shape(index)[0]
        one_task = tf.logical_and(batch > 0, tf.reduce_all(tf.equal(index, index[:1])))

        def whole_batch():
            branches = [lambda position=position: self._row_outputs(position, rows_inputs(position, tf.range(batch)))
                        for position in range(len(self._tasks))]
            return tf.switch_case(index[0], branches)

        outputs = tf.cond(one_task, whole_batch, lambda: self._partitioned(index, rows_inputs))
        return {"task": task, **outputs}

    def _partitioned(self, index, rows_inputs) -> dict:
        """The outputs of a batch of several tasks: partitioned by task, each part through its task, put back in
        order (a task without rows costs nothing)."""
        rows = tf.dynamic_partition(tf.range(tf.shape(index)[0]), index, len(self._tasks))
        parts = []
        for position, indices in enumerate(rows):
            def run(position=position, indices=indices):
                return self._row_outputs(position, rows_inputs(position, indices))

            parts.append(tf.cond(tf.size(indices) > 0, run, self._empty_outputs))
        return {key: tf.dynamic_stitch(rows, [part[key] for part in parts]) for key in parts[0]}

    def _from_text(self, task, text, text_b=None):
        texts = {"task": task, "text": text} if text_b is None else {"task": task, "text": text, "text_b": text_b}
        texts = checked_texts(**texts)
        text_b = texts.get("text_b", texts["text"])
        return self._routed(texts["task"], lambda index, rows: self._packing.functions[index](
            tf.gather(texts["text"], rows), tf.gather(text_b, rows)))

    def _from_ids(self, task, input_word_ids, input_mask, input_type_ids):
        task = checked_texts(task=task)["task"]
        ids = dict(zip(IDS, (input_word_ids, input_mask, input_type_ids)))
        return self._routed(task, lambda index, rows: {key: tf.gather(value, rows) for key, value in ids.items()})

    def signatures(self) -> dict:
        text = tf.TensorSpec([None], tf.string, name="text")
        text_b = tf.TensorSpec([None], tf.string, name="text_b")
        task = tf.TensorSpec([None], tf.string, name="task")
        if self.pairs:
            serve = tf.function(lambda task, text, text_b: self._from_text(task, text, text_b),
                                input_signature=[task, text, text_b], autograph=False)
        else:
            serve = tf.function(lambda task, text: self._from_text(task, text), input_signature=[task, text],
                                autograph=False)
        ids_specs = [tf.TensorSpec([None, None], tf.int32, name=name) for name in IDS]
        from_ids = tf.function(self._from_ids, input_signature=[task] + ids_specs, autograph=False)
        # The functions are not kept as attributes: tf.saved_model.save would trace a tracked tf.function again.
        signatures = {"serving_default": serve.get_concrete_function(),
                      "from_ids": from_ids.get_concrete_function()}
        for index, served in enumerate(self._tasks):
            signatures[served.name] = self._task_signature(index).get_concrete_function()
        return signatures

    def _task_signature(self, index: int):
        text = tf.TensorSpec([None], tf.string, name="text")
        if self._tasks[index].pairs:
            def serve(text, text_b):
                texts = checked_texts(text=text, text_b=text_b)
                return self._task_outputs(index, self._packing.functions[index](texts["text"], texts["text_b"]))

            function = tf.function(serve, input_signature=[text, tf.TensorSpec([None], tf.string, name="text_b")],
                                   autograph=False)
        else:
            def serve(text):
                text = checked_texts(text=text)["text"]
                return self._task_outputs(index, self._packing.functions[index](text, text))  # text_b unread

            function = tf.function(serve, input_signature=[text], autograph=False)
        return function
