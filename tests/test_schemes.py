"""Issue 9's optimisation schemes: schedules, per-variable rates, unfreezing, regularisers toward the pretrained
weights, scalar mix, auxiliary MLM, multi-task sampling, distillation and ensembling — each does what it says."""

import keras
import numpy as np
import pytest

from tfx_transfer import BertClassifier, BertEncoder
from tfx_transfer.adaptation.optimizers import PerVariableRates, create_optimizer
from tfx_transfer.adaptation.schedules import (ConstantWithWarmup, SlantedTriangular, WarmupLinearDecay,
                                               build_schedule)

LAYERS = 2


def tiny_classifier(num_classes=2, **encoder_options):
    encoder = BertEncoder(vocab_size=40, hidden_size=8, num_hidden_layers=LAYERS, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=16, **encoder_options)
    return BertClassifier(encoder, num_classes)


def batch(n=8, length=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 40, (n, length)).astype("int32")
    ids[:, 0] = 2
    return ({"input_word_ids": ids, "input_mask": np.ones_like(ids), "input_type_ids": np.zeros_like(ids)},
            rng.integers(0, 2, n).astype("int32"))


# ---------------------------------------------------------------------------------------------- schedules
def _curve(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_slanted_triangular_is_ulmfit_equation_3():
    schedule = SlantedTriangular(0.01, total_steps=1000, cut_frac=0.1, ratio=32)
    # cut = 100: lr rises from peak/32 to the peak at step 100, then falls back to peak/32 at step 1000.
    np.testing.assert_allclose(_curve(schedule, [0, 50, 100, 550, 1000, 2000]),
                               [0.01 / 32, 0.01 * (1 + 0.5 * 31) / 32, 0.01, 0.01 * (1 + 0.5 * 31) / 32, 0.01 / 32,
                                0.01 / 32], rtol=1e-5)
    assert SlantedTriangular.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="cut_frac"):
        SlantedTriangular(0.01, 100, cut_frac=1.5)


def test_constant_and_hugging_face_linear_schedules():
    np.testing.assert_allclose(_curve(ConstantWithWarmup(1e-3, warmup_steps=10), [0, 5, 10, 500]),
                               [0, 5e-4, 1e-3, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(_curve(ConstantWithWarmup(1e-3), [0, 7]), [1e-3, 1e-3], rtol=1e-6)
    hf = WarmupLinearDecay(1e-3, total_steps=110, warmup_steps=10, decay_from_warmup=True)
    google = WarmupLinearDecay(1e-3, total_steps=110, warmup_steps=10)
    # Hugging Face's decay starts at the peak after the warmup; google-research/bert's has decayed since step 0.
    np.testing.assert_allclose(_curve(hf, [5, 10, 60, 110]), [5e-4, 1e-3, 5e-4, 0.0], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(_curve(google, [10, 55, 110]), [1e-3 * 100 / 110, 5e-4, 0.0], rtol=1e-5, atol=1e-12)
    for name in ("linear", "linear_after_warmup", "slanted_triangular", "constant"):
        schedule = build_schedule(name, 1e-3, 100, 10)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
        assert _curve(restored, [0, 10, 50]) == _curve(schedule, [0, 10, 50])
    with pytest.raises(ValueError, match="Unknown learning-rate schedule"):
        build_schedule("cosine_whatever", 1e-3, 10)


# ---------------------------------------------------------------------------------------------- per-variable rates
class RatedSGD(PerVariableRates, keras.optimizers.SGD):
    pass


def test_per_variable_rates_work_with_any_optimizer():
    """SGD update = lr x rate x gradient; rate 0 = frozen, bit-identical."""
    inputs = keras.Input((3,))
    first, second = keras.layers.Dense(2, name="first"), keras.layers.Dense(1, name="second")
    model = keras.Model(inputs, second(first(inputs)))
    optimizer = RatedSGD({"first/kernel": 0.5, "first/bias": 0.0}, learning_rate=0.1)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")
    before = [np.asarray(w).copy() for w in model.weights]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x))
    grads = [np.asarray(g) for g in tape.gradient(loss, model.trainable_variables)]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    after = [np.asarray(w) for w in model.weights]
    np.testing.assert_allclose(after[0], before[0] - 0.1 * 0.5 * grads[0], rtol=1e-5)
    np.testing.assert_array_equal(after[1], before[1])  # rate 0: not a bit changed
    np.testing.assert_allclose(after[2], before[2] - 0.1 * grads[2], rtol=1e-5)
    optimizer.set_rates({"first/bias": 1.0})
    assert optimizer.current_rates()["first/bias"] == 1.0
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert not np.array_equal(np.asarray(model.weights[1]), before[1])  # unfrozen without recompiling
    with pytest.raises(ValueError, match="not variables"):
        optimizer.set_rates({"nope/kernel": 1.0})


def test_gradient_accumulation_averages_batches():
    """Two accumulated batches of 4 = one batch of 8 (SGD, no clipping)."""
    x, y = batch(8)

    def run(optimizer, batch_size):
        keras.utils.set_random_seed(3)
        model = tiny_classifier(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model.get_layer("head_dropout").rate = 0.0
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        return [np.asarray(w) for w in model.weights]

    accumulated = run(keras.optimizers.SGD(0.5, gradient_accumulation_steps=2), 4)
    whole = run(keras.optimizers.SGD(0.5), 8)
    for a, b in zip(accumulated, whole):
        np.testing.assert_allclose(a, b, atol=1e-6)
    optimizer = create_optimizer(1e-3, 10, gradient_accumulation_steps=4)
    assert optimizer.gradient_accumulation_steps == 4
    assert create_optimizer(1e-3, 10, gradient_accumulation_steps=1).gradient_accumulation_steps is None
    assert create_optimizer(1e-3, 10, global_clipnorm=0).global_clipnorm is None


# ---------------------------------------------------------------------------------------------- unfreezing
def test_unfreezing_plans():
    from tfx_transfer.adaptation.unfreezing import phase_at, unfreezing_plan

    gradual = unfreezing_plan("gradual", num_layers=2, total_steps=8)  # 4 phases of 2 steps
    assert [(p.start_step, sorted(p.depths)) for p in gradual] == [(0, [0]), (2, [0, 1]), (4, [0, 1, 2]),
                                                                  (6, [0, 1, 2, 3])]
    assert [p.description for p in gradual] == ["head", "+ transformer_layer_1", "+ transformer_layer_0",
                                                "+ embeddings"]
    chain = unfreezing_plan("chain_thaw", num_layers=2, total_steps=10)
    assert [sorted(p.depths) for p in chain] == [[0], [3], [2], [1], [0, 1, 2, 3]]
    sequential = unfreezing_plan("sequential", num_layers=2, total_steps=9, sequential_steps=(2, 3))
    assert [(p.start_step, sorted(p.depths)) for p in sequential] == [(0, [0]), (2, [0, 1, 2]), (5, [0, 1, 2, 3])]
    assert [phase_at(gradual, s) for s in (0, 1, 2, 5, 6, 100)] == [0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="Unknown unfreezing"):
        unfreezing_plan("thaw_all", 2, 10)


def test_gradual_unfreezing_keeps_frozen_blocks_bit_identical_until_their_phase():
    from tfx_transfer.adaptation.unfreezing import UnfreezingCallback, unfreezing_plan

    model = tiny_classifier()
    model.compile(optimizer=create_optimizer(1e-2, 8, per_variable_rates=True, model=model),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch(16)
    callback = UnfreezingCallback(unfreezing_plan("gradual", LAYERS, total_steps=8, interval=2))
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append({w.path: np.asarray(w).copy() for w in model.weights})

    initial = {w.path: np.asarray(w).copy() for w in model.weights}
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[callback, Snapshot()])
    assert [(step, name) for step, name, _ in callback.history] == [
        (0, "head"), (2, "+ transformer_layer_1"), (4, "+ transformer_layer_0"), (6, "+ embeddings")]
    first_step_changed = {
        "classifier/kernel": 1, "transformer_layer_1/output/kernel": 3, "transformer_layer_0/output/kernel": 5,
        "embeddings/word_embeddings/embeddings": 7}  # 1-based step of the first update of each block
    for path, first in first_step_changed.items():
        for step in range(1, 9):
            unchanged = np.array_equal(snapshots[step - 1][path], initial[path])
            assert unchanged == (step < first), (path, step)
    assert "transformer_layer_0/output/kernel" in callback.history[2][2]


def test_unfreezing_needs_per_variable_rates():
    from tfx_transfer.adaptation.unfreezing import UnfreezingCallback, unfreezing_plan

    model = tiny_classifier()
    model.compile(optimizer=create_optimizer(1e-2, 8), loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = batch(4)
    with pytest.raises(ValueError, match="per_variable_rates=True"):
        model.fit(x, y, batch_size=2, verbose=0,
                  callbacks=[UnfreezingCallback(unfreezing_plan("gradual", LAYERS, 4))])


# ---------------------------------------------------------------------------------------------- scalar mix
def test_scalar_mix_is_softmax_weighted_sum_and_trains(tmp_path):
    from tfx_transfer.adaptation.strategies import apply_strategy
    from tfx_transfer.layers.scalar_mix import ScalarMix
    from tfx_transfer.models.feature_classifier import FeatureClassifier

    mix = ScalarMix(3)
    layers = [np.full((1, 2, 4), float(i), "float32") for i in range(3)]
    np.testing.assert_allclose(mix(layers), np.full((1, 2, 4), 1.0), rtol=1e-6)  # zeros -> mean of 0, 1, 2
    mix.scalars.assign([0.0, 0.0, np.log(2.0)])
    mix.gamma.assign(2.0)
    np.testing.assert_allclose(mix(layers), np.full((1, 2, 4), 2.0 * (0 + 1 + 2 * 2) / 4), rtol=1e-6)

    encoder = BertEncoder(vocab_size=40, hidden_size=8, num_hidden_layers=LAYERS, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=16)
    for head in ("linear", "bilstm"):
        model = FeatureClassifier(encoder, 2, head=head, lstm_units=4)
        report = apply_strategy(model, "feature_extraction")
        assert report.groups["head"]["trainable"] == report.trainable > 0  # only mix + head train
        frozen = {w.path: np.asarray(w).copy() for w in encoder.weights}
        scalars = np.asarray(model.get_layer("scalar_mix").scalars).copy()
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = batch(8)
        model.fit(x, y, epochs=2, verbose=0)
        assert not np.allclose(np.asarray(model.get_layer("scalar_mix").scalars), scalars)
        assert all(np.array_equal(np.asarray(w), frozen[w.path]) for w in encoder.weights)
        # Padding does not change the prediction for the real tokens.
        padded = {k: np.pad(v, ((0, 0), (0, 3))) for k, v in x.items()}
        np.testing.assert_allclose(model(padded), model(x), atol=1e-5)
        path = tmp_path / f"{head}.keras"
        model.save(path)
        np.testing.assert_allclose(keras.saving.load_model(path)(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="head="):
        FeatureClassifier(encoder, 2, head="transformer")


# ---------------------------------------------------------------------------------------------- regularisers
def _fit(model, steps=6, lr=1e-2, seed=0):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = batch(2 * steps, seed=seed)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)


def _drift(model, initial):
    return max(float(np.abs(np.asarray(w) - initial[w.path]).max()) for w in model.encoder.weights)


def test_l2sp_huge_coefficient_keeps_pretrained_weights():
    from tfx_transfer.adaptation.regularizers import L2SP, apply_l2sp

    free = tiny_classifier()
    initial = {w.path: np.asarray(w).copy() for w in free.encoder.weights}
    _fit(free)
    held = tiny_classifier()
    held.set_weights([initial.get(w.path, np.asarray(w)) for w in held.weights])
    anchors = apply_l2sp(held, coefficient=1e6)
    assert set(anchors) == {w.path for w in held.encoder.trainable_weights}  # the head is not anchored
    _fit(held)
    # Adam moves every weight ~lr per step; the penalty pulls it straight back: drift stays ~lr, not ~steps x lr.
    assert _drift(free, initial) > 4e-2 and _drift(held, initial) < 2.5e-2
    penalty = L2SP(np.ones(3, "float32"), 4.0)
    assert float(penalty(np.array([1.0, 2.0, 3.0], "float32"))) == pytest.approx(0.5 * 4.0 * (0 + 1 + 4))


def test_ewc_penalty_zero_at_anchor_positive_away_and_fisher_is_mean_squared_gradient():
    from tfx_transfer.adaptation.regularizers import EWC, apply_ewc, estimate_fisher

    anchor = np.array([1.0, -1.0], "float32")
    penalty = EWC(anchor, 2.0, np.array([3.0, 0.0], "float32"))
    assert float(penalty(anchor)) == 0.0
    assert float(penalty(np.array([2.0, 5.0], "float32"))) == pytest.approx(0.5 * 2.0 * 3.0)  # F=0: free
    w = keras.Variable(np.array([2.0, 3.0], "float32"), name="w")
    examples = [np.array([1.0, 0.0], "float32"), np.array([0.0, 2.0], "float32")]
    fisher = estimate_fisher(lambda x: keras.ops.sum(w * x) ** 2, examples, [w])
    # grad of (w.x)^2 = 2 (w.x) x: (4, 0) and (0, 24) -> mean of squares (8, 288)
    np.testing.assert_allclose(fisher[w.path], [8.0, 288.0], rtol=1e-6)

    model = tiny_classifier()
    kernel = model.get_layer("bert_encoder").get_layer("pooler").dense.kernel
    apply_ewc(model, {kernel.path: np.ones(kernel.shape, "float32")}, coefficient=10.0)
    assert float(sum(model.losses)) == 0.0
    kernel.assign(kernel + 0.1)
    assert float(sum(model.losses)) == pytest.approx(0.5 * 10.0 * 0.01 * np.prod(kernel.shape), rel=1e-4)
    with pytest.raises(ValueError, match="does not train"):
        apply_ewc(model, {"nope/kernel": np.ones(2)}, 1.0)


def test_ewc_fisher_from_masked_lm():
    from tfx_transfer.adaptation.multitask import ewc_fisher_from_mlm
    from tfx_transfer.data.pipeline import EncodedSplit

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    model = tiny_classifier()
    x, y = batch(6)
    split = EncodedSplit(x["input_word_ids"], x["input_type_ids"], np.full(6, 6), y, [str(i) for i in range(6)])
    fisher = ewc_fisher_from_mlm(model, split, vocab, num_examples=4, head_steps=2)
    assert set(fisher) == {w.path for w in model.encoder.trainable_weights}
    assert all((f >= 0).all() for f in fisher.values())
    assert fisher["transformer_layer_1/output/kernel"].max() > 0


# ---------------------------------------------------------------------------------------------- auxiliary MLM
def test_masking_follows_bert_rates():
    import tensorflow as tf

    from tfx_transfer.layers.masked_lm import mask_tokens

    tf.random.set_seed(0)
    ids = np.full((200, 100), 7, "int32")
    ids[:, 0], ids[:, -1] = 2, 3
    masked, selected = mask_tokens(ids, np.ones_like(ids), mask_id=4, vocab_size=40, special_ids=[2, 3])
    masked, selected = np.asarray(masked), np.asarray(selected).astype(bool)
    assert not selected[:, 0].any() and not selected[:, -1].any()  # specials never masked
    assert 0.14 < selected.mean() < 0.16
    chosen = masked[selected]
    assert 0.77 < (chosen == 4).mean() < 0.83 and 0.07 < (chosen == 7).mean() < 0.14  # [MASK] 80%, kept ~10%(+random)
    assert (masked[~selected] == ids[~selected]).all()


def test_auxiliary_mlm_adds_weighted_loss_and_trains_tied_head():
    from tfx_transfer.adaptation.multitask import add_auxiliary_mlm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    model = tiny_classifier()
    head = add_auxiliary_mlm(model, vocab, weight=0.5)
    head_paths = {v.path for v in head.trainable_variables}
    assert head_paths <= {v.path for v in model.trainable_variables}
    assert not any("embeddings" in p for p in head_paths)  # decoder tied: no second embedding table
    x, y = batch(8)
    task_only = float(keras.losses.SparseCategoricalCrossentropy(True)(y, model(x)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    total = float(model.compute_loss(x=x, y=y, y_pred=model(x), training=True))
    assert total > task_only + 0.5 * 2.0  # + 0.5 x masked-LM (~ln 40 = 3.7 at init)
    assert float(model.compute_loss(x=x, y=y, y_pred=model(x), training=False)) == pytest.approx(task_only, rel=1e-5)
    before = np.asarray(head.output_bias).copy()
    model.fit(x, y, batch_size=4, verbose=0)
    assert not np.array_equal(np.asarray(head.output_bias), before)


# ---------------------------------------------------------------------------------------------- multi-task
def test_task_sampler_proportions():
    from tfx_transfer.adaptation.multitask import TaskSampler

    sizes = {"a": 900, "b": 100}
    assert TaskSampler(sizes, "proportional").probabilities == pytest.approx({"a": 0.9, "b": 0.1})
    assert TaskSampler(sizes, "uniform").probabilities == pytest.approx({"a": 0.5, "b": 0.5})
    assert TaskSampler(sizes, "temperature", temperature=2.0).probabilities == pytest.approx({"a": 0.75, "b": 0.25})
    schedule = TaskSampler(sizes, "proportional", seed=1).schedule(20000)
    assert schedule.count("b") / 20000 == pytest.approx(0.1, abs=0.01)
    assert schedule == TaskSampler(sizes, "proportional", seed=1).schedule(20000)
    with pytest.raises(ValueError, match="Unknown task sampling"):
        TaskSampler(sizes, "round_robin")


def test_multitask_trainer_shares_encoder_and_trains_each_head():
    from tfx_transfer.adaptation.multitask import MultiTaskTrainer, TaskSampler, TaskSpec
    from tfx_transfer.data.pipeline import EncodedSplit

    encoder = BertEncoder(vocab_size=40, hidden_size=8, num_hidden_layers=LAYERS, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=16)
    models = {"pairs": BertClassifier(encoder, 2, name="pairs"), "three": BertClassifier(encoder, 3, name="three")}
    specs = {}
    for i, (name, model) in enumerate(models.items()):
        x, _ = batch(12, seed=i)
        labels = np.arange(12) % model.num_classes
        split = EncodedSplit(x["input_word_ids"], x["input_type_ids"], np.full(12, 6), labels.astype("int32"),
                             [str(j) for j in range(12)])
        specs[name] = TaskSpec(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), split)
    heads = {n: np.asarray(m.get_layer("classifier").kernel).copy() for n, m in models.items()}
    shared = np.asarray(encoder.weights[0]).copy()
    trainer = MultiTaskTrainer(specs, keras.optimizers.Adam(1e-2), TaskSampler({"pairs": 12, "three": 12}, seed=0))
    result = trainer.train(num_steps=10, batch_size=4, max_seq_length=16)
    assert sum(result["steps_per_task"].values()) == 10 and min(result["steps_per_task"].values()) > 0
    for name, model in models.items():
        assert not np.array_equal(np.asarray(model.get_layer("classifier").kernel), heads[name])
    assert not np.array_equal(np.asarray(encoder.weights[0]), shared)
    assert models["pairs"].encoder is models["three"].encoder


# ---------------------------------------------------------------------------------------------- distillation
def test_distillation_loss_equals_hand_computed_values():
    from tfx_transfer.adaptation.distillation import DistillationLoss, pack_targets

    teacher = np.array([[0.7, 0.2, 0.1]], "float32")
    logits = np.array([[1.0, 0.5, -1.0]], "float32")
    targets = pack_targets(np.array([1]), teacher)
    t, alpha = 2.0, 0.3
    soft = teacher ** (1 / t) / (teacher ** (1 / t)).sum()
    student_t = np.exp(logits / t) / np.exp(logits / t).sum()
    kl = float((soft * np.log(soft / student_t)).sum())
    hard = float(-np.log(np.exp(logits[0, 1]) / np.exp(logits).sum()))
    expected = alpha * t * t * kl + (1 - alpha) * hard
    assert float(DistillationLoss(t, alpha)(targets, logits)) == pytest.approx(expected, rel=1e-5)
    # alpha = 1 and a student equal to the teacher: zero loss.
    assert float(DistillationLoss(1.0, 1.0)(targets, np.log(teacher))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="summing to 1"):
        pack_targets(np.array([0]), np.array([[0.5, 0.2]]))


def test_truncated_student_copies_spaced_teacher_layers():
    from tfx_transfer.adaptation.distillation import truncated_encoder

    teacher = BertEncoder(vocab_size=40, hidden_size=8, num_hidden_layers=4, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=16)
    student, chosen = truncated_encoder(teacher, 2)
    assert chosen == [0, 3] and student.bert_config.num_hidden_layers == 2
    np.testing.assert_array_equal(np.asarray(student.get_layer("transformer_layer_1").weights[0]),
                                  np.asarray(teacher.get_layer("transformer_layer_3").weights[0]))
    np.testing.assert_array_equal(np.asarray(student.get_layer("embeddings").weights[0]),
                                  np.asarray(teacher.get_layer("embeddings").weights[0]))


# ---------------------------------------------------------------------------------------------- ensembling
def test_ensemble_averages_probabilities(tmp_path):
    from tfx_transfer.adaptation.ensembling import average_probabilities, main, read_probabilities, \
        write_probabilities

    a = np.array([[0.9, 0.1], [0.4, 0.6]], "float32")
    b = np.array([[0.5, 0.5], [0.8, 0.2]], "float32")
    np.testing.assert_allclose(average_probabilities([a, b]), [[0.7, 0.3], [0.6, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(average_probabilities([a, b], [3, 1]), [[0.8, 0.2], [0.5, 0.5]], rtol=1e-6)
    with pytest.raises(ValueError, match="different shapes"):
        average_probabilities([a, b[:1]])
    write_probabilities(tmp_path / "a.tsv", a)
    write_probabilities(tmp_path / "b.tsv", b)
    assert main([f"--inputs={tmp_path / 'a.tsv'},{tmp_path / 'b.tsv'}", f"--output_file={tmp_path / 'e.tsv'}"]) == 0
    np.testing.assert_allclose(read_probabilities(tmp_path / "e.tsv"), [[0.7, 0.3], [0.6, 0.4]], atol=1e-6)
    assert main([f"--inputs={tmp_path / 'missing.tsv'}", f"--output_file={tmp_path / 'x.tsv'}"]) == 2
