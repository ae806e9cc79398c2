"""Training and inference loops over planned batches: resumable, logged, deterministic.

`train(...)` runs `model.fit` over the epochs' batch plans, saving a checkpoint every `save_every_steps` and at the
end; on start it restores the newest checkpoint of `checkpoint_dir` and skips the batches already trained on, so
re-running an interrupted command continues instead of starting over. `predict(...)` returns outputs in file
order.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import keras
import numpy as np
from absl import logging

from tfx_transfer.data.pipeline import EncodedSplit, dataset, plan_batches
from tfx_transfer.jobs.training_state import TrainingCheckpoints


def total_train_steps(num_examples: int, batch_size: int, epochs: float) -> int:
    """google-research/bert's count: int(num_examples / batch_size * epochs), at least 1."""
    return max(1, int(num_examples / batch_size * epochs))


class _StepCallback(keras.callbacks.Callback):
    """Saves checkpoints and writes TensorBoard scalars on the global step (fit restarts its own count)."""

    def __init__(self, start_step, checkpoints, save_every, writer, log_every=10):
        super().__init__()
        self.start_step = start_step
        self.checkpoints = checkpoints
        self.save_every = save_every
        self.writer = writer
        self.log_every = log_every

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if self.writer is not None and (step % self.log_every == 0 or step == 1):
            import tensorflow as tf

            with self.writer.as_default(step=step):
                tf.summary.scalar("loss", float(logs.get("loss", np.nan)))
                lr = self.model.optimizer.learning_rate
                tf.summary.scalar("learning_rate", float(np.asarray(lr)))
        if self.save_every and step % self.save_every == 0:
            self.checkpoints.save(self.model, step)


def train(model, split: EncodedSplit, *, epochs: float, batch_size: int, max_seq_length: int, seed: int,
          checkpoint_dir: str, save_every_steps: int = 1000, bucket_by_length: bool = True,
          log_dir: Optional[str] = None, verbose: int = 1, callbacks=()) -> dict:
    """Trains a compiled `model` on `split`. Returns {"steps", "resumed_from", "seconds", "examples_per_s"}.

    `callbacks`: extra Keras callbacks (their batch indices restart at every epoch's `fit`)."""
    import tensorflow as tf

    checkpoints = TrainingCheckpoints(checkpoint_dir)
    steps_per_epoch = math.ceil(len(split) / batch_size)
    total = total_train_steps(len(split), batch_size, epochs)
    step = 0
    latest = checkpoints.latest()
    if latest:
        step = checkpoints.restore(model, latest)["step"]
        logging.info("Resuming training from %s: step %d of %d (delete %s to start over).", latest, step, total,
                     checkpoint_dir)
    resumed_from = step
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    start = time.perf_counter()
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        plan = plan_batches(split.lengths, batch_size, max_seq_length, shuffle=True, seed=seed, epoch=epoch,
                            bucket_by_length=bucket_by_length)[offset:]
        plan = plan[: total - step]
        logging.info("Epoch %d: steps %d-%d of %d.", epoch + 1, step + 1, step + len(plan), total)
        model.fit(dataset(split, plan), epochs=1, verbose=verbose, shuffle=False,
                  callbacks=[_StepCallback(step, checkpoints, save_every_steps, writer), *callbacks])
        step += len(plan)
    seconds = time.perf_counter() - start
    if step > resumed_from:
        checkpoints.save(model, step)
    trained = step - resumed_from
    return {"steps": step, "resumed_from": resumed_from, "seconds": seconds,
            "examples_per_s": trained * batch_size / seconds if seconds and trained else 0.0}


def predict(model, split: EncodedSplit, *, batch_size: int, max_seq_length: int, jit_compile: bool = False,
            bucket_by_length: bool = True, per_token: bool = False):
    """Model outputs for every example of `split`, in file order: an array [N, ...], or a dict of them for
    dict-output models. With `per_token`, outputs are [B, T] per batch and are returned as [N, L], L the split's
    longest example (positions beyond an example's length hold zeros)."""
    import tensorflow as tf

    plan = plan_batches(split.lengths, batch_size, max_seq_length, shuffle=False,
                        bucket_by_length=bucket_by_length)
    forward = tf.function(lambda inputs: model(inputs, training=False), jit_compile=jit_compile,
                          reduce_retracing=True)
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
