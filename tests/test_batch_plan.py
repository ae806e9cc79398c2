"""Batch plans (pad to each batch's longest row, buckets, max_length), one trace for every shape, and the timing
facts `trainer.train` reports (issue 23)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tfx_transfer.data.pipeline import (PADDINGS, EncodedSplit, bucket_boundaries, dataset, default_padding,
                                       plan_batches)

from conftest import WORDS  # noqa: E402  (the tiny model's vocabulary)


def _lengths(n=1000, seed=0):
    """Sentence lengths shaped like SST-2's (many short, a long tail), in tokens with [CLS]/[SEP]."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.gamma(2.0, 6.0, n).astype(np.int32) + 3, 3, 64)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_row_once_and_every_batch_long_enough(padding, shuffle):
    lengths = _lengths()
    plan = plan_batches(lengths, 32, 64, shuffle=shuffle, seed=3, epoch=1, padding=padding)
    rows = np.concatenate([b.indices for b in plan])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert all(len(b.indices) <= 32 for b in plan)
    for batch in plan:
        longest = int(lengths[batch.indices].max())
        if padding == "longest":
            assert batch.length == longest
        elif padding == "buckets":
            assert batch.length in bucket_boundaries(64) and batch.length - 16 < longest <= batch.length
        else:
            assert batch.length == 64


def test_longest_pads_far_less_than_buckets_and_is_deterministic():
    lengths = _lengths()

    def mean_padded(padding, **kwargs):
        plan = plan_batches(lengths, 32, 64, shuffle=True, seed=0, epoch=0, padding=padding, **kwargs)
        return sum(b.length * len(b.indices) for b in plan) / len(lengths)

    true_mean = lengths.mean()
    longest, buckets, fixed = (mean_padded(p) for p in ("longest", "buckets", "max_length"))
    assert true_mean <= longest < true_mean + 1.5  # sortish windows: rows of a batch have nearly equal lengths
    assert longest < buckets - 4 < fixed
    first = plan_batches(lengths, 32, 64, shuffle=True, seed=5, epoch=2, padding="longest")
    again = plan_batches(lengths, 32, 64, shuffle=True, seed=5, epoch=2, padding="longest")
    other_epoch = plan_batches(lengths, 32, 64, shuffle=True, seed=5, epoch=3, padding="longest")
    assert [b.indices.tolist() for b in first] == [b.indices.tolist() for b in again]
    assert [b.indices.tolist() for b in first] != [b.indices.tolist() for b in other_epoch]


def test_input_pipelines_run_without_tf_data_autotuning():
    """tf.data's autotuning thread can keep an iterator's deletion waiting for tens of seconds at the end of every
    `fit` (pipeline.finish_pipeline): the batches are deterministic, prefetched, and have no autotuning."""
    lengths = _lengths(100)
    width = int(lengths.max())
    split = EncodedSplit(word_ids=np.arange(100 * width, dtype=np.int32).reshape(100, width) % 97,
                         type_ids=np.zeros((100, width), np.int32), lengths=lengths,
                         labels=np.arange(100, dtype=np.int32) % 2, guids=[str(i) for i in range(100)])
    plan = plan_batches(lengths, 16, 64, shuffle=True, seed=0, epoch=0)
    data = dataset(split, plan)
    assert data.options().autotune.enabled is False and data.options().deterministic is True
    batches = list(data)
    assert [b[0]["input_word_ids"].shape for b in batches] == [(len(p.indices), p.length) for p in plan]
    for (inputs, labels), batch in zip(batches, plan):
        assert np.array_equal(labels.numpy(), split.labels[batch.indices])
        assert np.array_equal(inputs["input_mask"].numpy().sum(axis=1), lengths[batch.indices])


def test_unknown_padding_is_refused_and_xla_defaults_to_buckets():
    with pytest.raises(ValueError, match="padding='shortest'"):
        plan_batches(_lengths(10), 4, 64, shuffle=False, padding="shortest")
    assert default_padding(jit_compile=False) == "longest"
    assert default_padding(jit_compile=True) == "buckets"


def _tiny_split(tiny_model, n=40):
    from tfx_transfer.data.examples import InputExample
    from tfx_transfer.data.pipeline import encode_examples
    from tfx_transfer.text.tokenizer import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(tiny_model)
    examples = [InputExample(str(i), " ".join(WORDS[(i * 3) % 9:(i * 3) % 9 + 1 + i % 11]), label=str(i % 2))
                for i in range(n)]
    return encode_examples(examples, tokenizer, 32, label_list=["0", "1"])


def test_prediction_traces_once_for_every_shape_and_matches_fixed_padding(tiny_model):
    from tfx_transfer import BertClassifier, BertEncoder
    from tfx_transfer.jobs import trainer

    split = _tiny_split(tiny_model)
    model = BertClassifier(BertEncoder.from_pretrained(tiny_model), 2)
    plan = plan_batches(split.lengths, 8, 32, shuffle=False, padding="longest")
    assert len({b.length for b in plan}) >= 3  # several shapes, one of them a short last batch
    longest = trainer.predict(model, split, batch_size=8, max_seq_length=32, padding="longest")
    trainer.predict(model, split, batch_size=8, max_seq_length=32, padding="longest")  # again: evaluation
    # lengths <= 32: the function traced without the long-input attention form
    assert trainer.forward_function(model, longest=32).experimental_get_tracing_count() == 1
    assert len(trainer._FORWARD_FUNCTIONS[model]) == 1
    fixed = trainer.predict(model, split, batch_size=8, max_seq_length=32, padding="max_length")
    np.testing.assert_allclose(longest, fixed, atol=1e-5)  # padding is masked: the same logits in file order


def test_training_reports_first_step_steady_speed_and_padding(tiny_model, tmp_path):
    import keras

    from tfx_transfer import BertClassifier, BertEncoder
    from tfx_transfer.jobs import trainer

    split = _tiny_split(tiny_model, n=100)
    model = BertClassifier(BertEncoder.from_pretrained(tiny_model), 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    traces = []  # train_step runs in Python only while the training function is being traced
    train_step = model.train_step
    model.train_step = lambda data: (traces.append(1), train_step(data))[1]
    result = trainer.train(model, split, epochs=2, batch_size=4, max_seq_length=32, seed=0,
                           checkpoint_dir=str(tmp_path / "checkpoints"), save_every_steps=0, verbose=0)
    assert result["steps"] == 50
    plans = [plan_batches(split.lengths, 4, 32, shuffle=True, seed=0, epoch=e) for e in (0, 1)]
    expected = sum(b.length * len(b.indices) for plan in plans for b in plan) / (2 * len(split))
    assert result["mean_padded_length"] == pytest.approx(expected)
    assert 0 < result["first_step_seconds"] < result["seconds"]
    assert result["steady_examples_per_s"] > 0
    # One trace for every batch shape and both epochs; the optimizer's slots exist before it, so tf.function does not
    # trace a second time after creating them.
    assert len(traces) == 1


class _KilledAfterStep(Exception):
    pass


def test_a_run_killed_between_an_evaluation_steps_checkpoint_and_its_evaluation_still_makes_it(tiny_model, tmp_path):
    """The step callback checkpoints step 4 before the evaluation due there; a run that dies in between resumes from
    that checkpoint and must make the evaluation (it skipped it, so the kept model could differ) to end with the
    uninterrupted run's history and choice."""
    import keras

    from tfx_transfer import BertClassifier, BertEncoder
    from tfx_transfer.jobs import trainer
    from tfx_transfer.jobs.best_model import BestModel, EvaluationSchedule
    from tfx_transfer.jobs.training_state import TrainingCheckpoints

    split = _tiny_split(tiny_model, n=24)

    def run(directory, callbacks=()):
        keras.utils.set_random_seed(0)
        model = BertClassifier(BertEncoder.from_pretrained(tiny_model), 2)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        best = BestModel(str(directory), "eval_loss")
        schedule = EvaluationSchedule(
            evaluate=lambda m: {"eval_loss": float(np.mean(np.abs(m.get_layer("classifier").weights[0])))},
            best=best, every_steps=4)
        trainer.train(model, split, epochs=2, batch_size=4, max_seq_length=32, seed=0, checkpoint_dir=str(directory),
                      save_every_steps=2, verbose=0, evaluation=schedule, callbacks=list(callbacks))
        return best

    class Kill(keras.callbacks.Callback):  # runs after the step callback has written the step's checkpoint
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == 4:
                raise _KilledAfterStep()

    reference = run(tmp_path / "reference")
    with pytest.raises(_KilledAfterStep):
        run(tmp_path / "killed", [Kill()])
    assert os.path.basename(TrainingCheckpoints(str(tmp_path / "killed")).latest()) == "ckpt-4"
    resumed = run(tmp_path / "killed")
    assert [e["step"] for e in reference.history] == [4, 8, 12]
    assert resumed.history == reference.history
    assert (resumed.best_step, resumed.best_value) == (reference.best_step, reference.best_value)
