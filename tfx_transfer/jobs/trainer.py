"""Training and inference loops over planned batches: resumable, logged, deterministic.

`train(...)` runs `model.fit` over the epochs' batch plans, saving a checkpoint every `save_every_steps` and at the
end; on start it restores the newest checkpoint of `checkpoint_dir` and skips the batches already trained on, so
re-running an interrupted command continues instead of starting over. SIGINT and SIGTERM stop training after the
current step with a checkpoint of it (`TrainingInterrupted`); after kill -9 the run resumes from the last periodic
checkpoint. Either way the resumed run sees the same (seeded) batches and ends with the same weights. With an
`EvaluationSchedule` (best_model.py) training pauses at its evaluation points, evaluates, keeps the best weights,
saves a checkpoint (which carries the schedule's state) and may stop early. A loss
that stops being finite (or non-finite weights about to be saved) stops training with `TrainingDiverged`, naming
the step and the last good checkpoint, which is left as it was.
`predict(...)` returns outputs in file order.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import threading
import time
import weakref
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfx_transfer.data.pipeline import PARALLEL_CALLS, EncodedSplit, dataset, plan_batches
from tfx_transfer.jobs import distribution
from tfx_transfer.jobs.outputs import check_free_space
from tfx_transfer.jobs.training_state import TrainingCheckpoints
from tfx_transfer.layers.attention import HEAD_BY_HEAD_FROM, keys_at_most
from tfx_transfer.models.int8_inference import int8_projections, quantize_projections


def total_train_steps(num_examples: int, batch_size: int, epochs: float) -> int:
    """google-research/bert's count: int(num_examples / batch_size * epochs), at least 1."""
    return max(1, int(num_examples / batch_size * epochs))


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; re-running the same command resumes."""

    def __init__(self, signum: int, step: int, checkpoint: str):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; saved {checkpoint}. Run the "
                         "same command again to resume.")


class TrainingDiverged(Exception):
    """The loss (or the weights about to be checkpointed) stopped being finite; nothing was saved after that."""

    def __init__(self, step: int, what: str, last_good: Optional[str]):
        self.step, self.last_good = step, last_good
        where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved before it"
        super().__init__(f"{what} at step {step}: training stopped and nothing was saved ({where}). Lower "
                         "--learning_rate or check the data; delete the checkpoints directory to start over.")


@contextlib.contextmanager
def _stop_requests():
    """Turns SIGINT/SIGTERM into a request (a dict with "signum") honoured at the next step boundary. A second
    signal of the same kind while stopping gets the default behaviour."""
    request = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be installed from the main thread
        return

    def handler(signum, frame):
        if request["signum"] is not None:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        request["signum"] = signum
        logging.warning("%s: stopping after the current step and saving a checkpoint.", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _StepCallback(keras.callbacks.Callback):
    """Saves checkpoints and writes TensorBoard scalars on the global step (fit restarts its own count); stops
    training at a step boundary when `stop_request` holds a signal number."""

    def __init__(self, start_step, checkpoints, save_every, writer, log_every=10, stop_request=None,
                 extra_state=dict):
        super().__init__()
        self.start_step = start_step
        self.extra_state = extra_state  # () -> what the evaluation schedule keeps in every checkpoint
        self.checkpoints = checkpoints
        self.save_every = save_every
        self.writer = writer
        self.log_every = log_every
        self.stop_request = stop_request if stop_request is not None else {"signum": None}
        self.steps_done = 0
        self.diverged = None  # (step, what) once the loss or the weights stop being finite

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            self.diverged = (step, f"The loss is {loss}")
            self.model.stop_training = True
            return
        if self.writer is not None and (step % self.log_every == 0 or step == 1):
            with self.writer.as_default(step=step):
                tf.summary.scalar("loss", float(logs.get("loss", np.nan)))
                lr = self.model.optimizer.learning_rate
                tf.summary.scalar("learning_rate", float(np.asarray(lr)))
        self.steps_done = batch + 1
        if self.save_every and step % self.save_every == 0:
            try:
                self.checkpoints.save(self.model, step, self.extra_state())
            except FloatingPointError as e:
                self.diverged = (step, str(e))
                self.model.stop_training = True
                return
        if self.stop_request["signum"] is not None:
            self.model.stop_training = True


class _StepClock(keras.callbacks.Callback):
    """Wall time of every training step across `fit` calls, for the run's timing facts (`timings`)."""

    def __init__(self, start: float):
        super().__init__()
        self.start = start
        self.durations = []  # per step; None for the first step of each fit call (tracing, dataset start-up)
        self.first_step_end = None
        self._last = None

    def on_train_begin(self, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.first_step_end is None:
            self.first_step_end = now
        self.durations.append(now - self._last if self._last is not None else None)
        self._last = now

    def timings(self, batch_size: int, skip: int = 20) -> dict:
        """first_step_seconds (from the start of training: restore, dataset, trace, one step) and
        steady_examples_per_s (steps after the first `skip`, leaving out each fit call's first step)."""
        steady = [d for d in self.durations[skip:] if d is not None]
        return {"first_step_seconds": self.first_step_end - self.start if self.first_step_end else None,
                "steady_examples_per_s": len(steady) * batch_size / sum(steady) if steady else None}


def train(model, split: EncodedSplit, *, epochs: float, batch_size: int, max_seq_length: int, seed: int,
          checkpoint_dir: str, save_every_steps: int = 1000, padding: str = "longest",
          log_dir: Optional[str] = None, verbose: int = 1, callbacks=(), evaluation=None,
          batch_transform=None) -> dict:
    """Trains a compiled `model` on `split`: an `EncodedSplit` (in memory: each epoch's batch plan), or a streamed
    source (`split.streamed`: data/streaming.py's `StreamedCorpus`: `len(split)` examples per pass, and
    `split.batches(batch_size, seed, padding)` the endless stream of batches, of which a resumed run skips the
    ones it trained on). Returns {"steps", "resumed_from", "seconds", "examples_per_s",
    "weights_fingerprint", "stopped_early", "first_step_seconds", "steady_examples_per_s", "mean_padded_length"}.

    `callbacks`: extra Keras callbacks (their batch indices restart at every `fit`). `evaluation`: an
    `EvaluationSchedule` (best_model.py), or None. `batch_transform(inputs, labels, epoch, position)` -> (inputs,
    labels), TF ops in the input pipeline (masked-LM targets: data/masking.py); `position` is the batch's index in
    its epoch, so a resumed run transforms each batch as an uninterrupted one."""
    chief = distribution.is_chief()
    if chief:
        os.makedirs(checkpoint_dir, exist_ok=True)
        check_free_space(checkpoint_dir, model)
    checkpoints = TrainingCheckpoints(checkpoint_dir, read_only=not chief)
    streamed = getattr(split, "streamed", False)
    steps_per_epoch = math.ceil(len(split) / batch_size)
    total = total_train_steps(len(split), batch_size, epochs)
    best = evaluation.best if evaluation is not None else None

    def extra_state():
        return {"evaluation": best.state()} if best is not None else {}

    step = 0
    latest = checkpoints.latest()
    if latest:
        with model.distribute_strategy.scope():  # optimizer slots are created as the strategy's variables
            state = checkpoints.restore(model, latest)
        step = state["step"]
        if best is not None:
            best.load_state(state.get("evaluation"))
        logging.info("Resuming training from %s: step %d of %d (delete %s to start over).", latest, step, total,
                     checkpoint_dir)
    resumed_from = step
    _build_optimizer(model)
    writer = tf.summary.create_file_writer(log_dir) if log_dir and chief else None
    start, evaluating = time.perf_counter(), 0.0
    clock, padded_tokens, trained_rows = _StepClock(start), 0, 0
    stopped_early = best is not None and best.stopped_early

    def evaluate_at(step):
        """The evaluation due at `step`; saves the tracker's state with the weights it judged (not at the end of
        training, which saves after the loop)."""
        nonlocal stopped_early, evaluating
        evaluation_start = time.perf_counter()
        results = evaluation.evaluate(model)
        _write_scalars(writer, step, results)
        stopped_early = best.record(model, step, results)
        if step < total and not stopped_early:
            _save(checkpoints, model, step, extra_state())
        evaluating += time.perf_counter() - evaluation_start

    if latest and best is not None and not stopped_early and evaluation.due(step, steps_per_epoch, total) and \
            not best.evaluated(step):
        # A checkpoint written at an evaluation step before that evaluation (by the step callback, or by a stop
        # request) whose run was killed before it evaluated: evaluate now, as the uninterrupted run did.
        evaluate_at(step)
    if stopped_early:
        logging.info("Training stopped early at step %d in the run that wrote %s; nothing more to train.", step,
                     latest)
    with _stop_requests() as stop:
        while step < total and not stopped_early:
            if streamed:  # one endless stream; its batches' positions count from the run's start
                run_to = evaluation.next_stop(step, total) if evaluation is not None else total
                epoch, offset, plan = 0, step, None
                logging.info("Streaming steps %d-%d of %d (%.2f epochs of %d sequences).", step + 1, run_to, total,
                             run_to / steps_per_epoch, len(split))
                batches = split.batches(batch_size=batch_size, seed=seed, padding=padding).skip(step).take(
                    run_to - step).apply(tf.data.experimental.assert_cardinality(run_to - step))  # it is endless
            else:
                epoch, offset = divmod(step, steps_per_epoch)
                epoch_end = min(total, (epoch + 1) * steps_per_epoch)
                run_to = evaluation.next_stop(step, epoch_end) if evaluation is not None else epoch_end
                plan = plan_batches(split.lengths, batch_size, max_seq_length, shuffle=True, seed=seed, epoch=epoch,
                                    padding=padding)[offset:offset + run_to - step]
                if offset == 0 or evaluation is None:
                    logging.info("Epoch %d: steps %d-%d of %d.", epoch + 1, step + 1, epoch_end, total)
                batches = dataset(split, plan)
            step_callback = _StepCallback(step, checkpoints, save_every_steps, writer, stop_request=stop,
                                          extra_state=extra_state)
            if batch_transform is not None:
                batches = batches.enumerate().map(
                    lambda i, batch, epoch=epoch, offset=offset: batch_transform(*batch, epoch, offset + i),
                    num_parallel_calls=PARALLEL_CALLS, deterministic=True)
            model.fit(batches, epochs=1, verbose=verbose, shuffle=False,
                      callbacks=[step_callback, clock, *callbacks])
            if step_callback.diverged:
                raise TrainingDiverged(*step_callback.diverged, checkpoints.latest())
            step += step_callback.steps_done
            for batch in (plan or [])[:step_callback.steps_done]:
                padded_tokens += batch.length * len(batch.indices)
                trained_rows += len(batch.indices)
            if stop["signum"] is not None and step < total:
                raise TrainingInterrupted(stop["signum"], step, checkpoints.save(model, step, extra_state()))
            if evaluation is not None and step_callback.steps_done == len(plan) and \
                    evaluation.due(step, steps_per_epoch, total):
                evaluate_at(step)
    seconds = time.perf_counter() - start - evaluating  # training time
    if step > resumed_from:
        _save(checkpoints, model, step, extra_state())
    trained = step - resumed_from
    fingerprint = weights_fingerprint(model)
    logging.info("Weights at step %d: fingerprint %s.", step, fingerprint)
    return {"steps": step, "resumed_from": resumed_from, "seconds": seconds, "weights_fingerprint": fingerprint,
            "examples_per_s": trained * batch_size / seconds if seconds and trained else 0.0,
            "stopped_early": stopped_early, **clock.timings(batch_size),
            "mean_padded_length": padded_tokens / trained_rows if trained_rows else None}


def _build_optimizer(model):
    """Creates the optimizer's slots before the first step. Left to the first step, they are created inside the
    traced training function, and tf.function then traces it a second time without variable creation: twice the
    tracing (MiniLM, SST-2: first step 26 s -> 12 s on this 2-core CPU)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def _save(checkpoints, model, step, extra):
    try:
        return checkpoints.save(model, step, extra)
    except FloatingPointError as e:
        raise TrainingDiverged(step, str(e), checkpoints.latest()) from e


def _write_scalars(writer, step, results):
    """Evaluation results as TensorBoard scalars `eval/<metric>` (what `tfx_transfer.plot` draws)."""
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in results.items():
            tf.summary.scalar(f"eval/{name}", float(value))
    writer.flush()


def weights_fingerprint(model) -> str:
    """SHA-256 (first 16 hex digits) of every model weight's bytes, in order: equal on every worker of a
    multi-worker run, and between runs that computed bit-identical weights."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
    return digest.hexdigest()[:16]


_FORWARD_FUNCTIONS = weakref.WeakKeyDictionary()  # model -> {(jit_compile, short inputs, int8): tf.function}


def forward_function(model, jit_compile: bool = False, longest: Optional[int] = None, int8: bool = False):
    """`model(inputs, training=False)` as one tf.function per model, traced once for int32 inputs of any
    [batch, length] (the three input_* keys), so batches padded to their own lengths never retrace and repeated
    evaluations (evaluation during training) reuse the trace. `longest`: the longest length the caller will send, if
    known; below attention.HEAD_BY_HEAD_FROM the trace leaves out the long-input attention form (`keys_at_most`),
    and a separate function is kept for such calls. `int8`: traced under `int8_projections()` (the token
    projections that `quantize_projections` prepared compute in int8; not with jit_compile: XLA has no int8 kernel
    for them)."""
    if int8 and jit_compile:
        raise ValueError("int8 inference runs without XLA (jit_compile=False): XLA has no oneDNN int8 kernel.")
    short = longest is not None and longest < HEAD_BY_HEAD_FROM
    functions = _FORWARD_FUNCTIONS.setdefault(model, {})
    if (jit_compile, short, int8) not in functions:
        spec = {key: tf.TensorSpec([None, None], tf.int32, name=key)
                for key in ("input_word_ids", "input_mask", "input_type_ids")}
        owner = weakref.ref(model)  # the cache must not keep the model alive
        function = tf.function(lambda inputs: owner()(inputs, training=False), jit_compile=jit_compile,
                               input_signature=[spec], autograph=False)  # no tensor-valued Python
        # control flow in the models: autograph would only re-write every layer's call while tracing
        with keys_at_most(longest if short else None), int8_projections() if int8 else contextlib.nullcontext():
            function.get_concrete_function()  # traced here, under the bound
        functions[(jit_compile, short, int8)] = function
    return functions[(jit_compile, short, int8)]


def predict(model, split: EncodedSplit, *, batch_size: int, max_seq_length: int, jit_compile: bool = False,
            padding: str = "longest", per_token: bool = False, int8: bool = False):
    """Model outputs for every example of `split`, in file order: an array [N, ...], or a dict of them for
    dict-output models. Batches are sorted by length and padded as `padding` says (data/pipeline.py). With
    `per_token`, outputs are [B, T] per batch and are returned as [N, L], L the split's longest example
    (positions beyond an example's length hold zeros). With `int8`, the encoder's token projections compute in
    int8 from the model's current weights (models/int8_inference.py; the model itself stays float32)."""
    plan = plan_batches(split.lengths, batch_size, max_seq_length, shuffle=False, padding=padding)
    if int8:
        quantize_projections(model)
    forward = forward_function(model, jit_compile, longest=max((batch.length for batch in plan), default=None),
                               int8=int8)
    width = split.word_ids.shape[1]
    collected = {}
    for batch, inputs in zip(plan, dataset(split, plan, with_labels=False)):
        values = forward(inputs)
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            value = np.asarray(value)
            if key not in collected:
                shape = (len(split), width) + value.shape[2:] if per_token else (len(split),) + value.shape[1:]
                collected[key] = np.zeros(shape, np.float32)
            if per_token:
                collected[key][batch.indices, :min(width, value.shape[1])] = value[:, :width]
            else:
                collected[key][batch.indices] = value
    return collected[None] if list(collected) == [None] else collected
