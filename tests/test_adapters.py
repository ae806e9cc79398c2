"""Adapters and parameter-efficient adaptation: layers, placement, strategies, adapter files, switching, LoRA merge."""

import os

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy, load_adaptation, save_adaptation
from tfx_transfer.adaptation import AdaptationSwitcher, ablate_adapters, merge_lora
from tfx_transfer.checkpoints import load_checkpoint
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.checkpoints.writers import save_google_checkpoint
from tfx_transfer.layers.adapters import BottleneckAdapter

from conftest import TINY
from layer_checks import assert_only_trainable_changed, check_layer, copy_base_weights, random_bert_inputs

KINDS = {
    "houlsby": AdapterConfig(kind="houlsby", size=8),
    "pfeiffer": AdapterConfig(kind="pfeiffer", size=8),
    "parallel": AdapterConfig(kind="parallel", size=8, sublayers=("attention", "ffn")),
    "lora": AdapterConfig(kind="lora", lora_rank=4, lora_dropout=0.1),
    "pal": AdapterConfig(kind="pal", size=8, pal_heads=2),
    "pal_unshared": AdapterConfig(kind="pal", size=8, pal_heads=2, pal_share="none"),
    "top_layer": AdapterConfig.top_layers(1, 2, size=8),
}
SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}


def _outputs(model, data):
    out = model(data, training=False)
    return np.asarray(out["sequence_output"] if isinstance(out, dict) else out)


# ---------------------------------------------------------------------------------------------- layers and placement
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_passes_the_shared_checks(kind, tmp_path):
    """Build, one fit step, .keras save/load, dropout only in training, padding invariance."""
    check_layer(lambda: BertEncoder(**TINY, adapters=KINDS[kind]), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path)


@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer", "parallel", "lora", "pal"])
def test_identity_at_zero_init(kind):
    base = BertEncoder(**TINY)
    config = AdapterConfig(kind=kind, size=8, pal_heads=2, zero_init_up=True, sublayers=None)
    adapted = BertEncoder(**TINY, adapters=config)
    copy_base_weights(base, adapted)
    data = random_bert_inputs(3, 7, 60)
    np.testing.assert_array_equal(_outputs(adapted, data), _outputs(base, data))


def test_near_identity_init_is_small_and_bounded(minilm_dir):
    base = BertEncoder.from_pretrained(minilm_dir)
    adapted = BertEncoder.from_pretrained(minilm_dir, adapters=AdapterConfig(size=64, init_stddev=1e-2))
    data = random_bert_inputs(2, 12, 30522)
    diff = np.abs(_outputs(adapted, data) - _outputs(base, data))
    real = data["input_mask"].astype(bool)
    # Two adapters per layer, each adds up(gelu(down(h))) with 1e-2 weights: a change far below the signal
    # (MiniLM's LayerNorm outputs have unit variance per token).
    assert 0 < diff[real].max() < 0.05 and diff[real].mean() < 5e-3


def test_adapter_placement_matches_adapter_bert():
    """Sequential adapter output = h + up(gelu(down(h))) on the sub-layer output, before residual + LayerNorm."""
    adapter = BottleneckAdapter(4, init_stddev=0.5)
    h = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    out = np.asarray(adapter(h))
    down, up = adapter.down, adapter.up
    z = h @ np.asarray(down.kernel) + np.asarray(down.bias)
    expected = h + np.asarray(keras.activations.gelu(z)) @ np.asarray(up.kernel) + np.asarray(up.bias)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    parallel = BottleneckAdapter(4, init_stddev=0.5, parallel=True, scale=4.0)
    x = h[::-1].copy()
    out = np.asarray(parallel(h, sublayer_input=x))
    pz = x @ np.asarray(parallel.down.kernel)
    np.testing.assert_allclose(out, h + 4.0 * (np.asarray(keras.activations.gelu(pz)) @ np.asarray(parallel.up.kernel)),
                               atol=1e-5)


def test_adapter_config_validation():
    with pytest.raises(ValueError, match="kind='bottle' is unknown"):
        AdapterConfig(kind="bottle")
    with pytest.raises(ValueError, match="size=0 must be a positive integer"):
        AdapterConfig(size=0)
    with pytest.raises(ValueError, match="lora_targets"):
        AdapterConfig(kind="lora", lora_targets=("q",))
    with pytest.raises(ValueError, match=r"layers \[5\] do not exist in a 2-layer encoder"):
        BertEncoder(**TINY, adapters=AdapterConfig(layers=(0, 5)))
    with pytest.raises(ValueError, match="PAL size=9 is not divisible by pal_heads=2"):
        BertEncoder(**TINY, adapters=AdapterConfig(kind="pal", size=9, pal_heads=2))
    assert AdapterConfig.from_dict(AdapterConfig(layers=[1]).to_dict()) == AdapterConfig(layers=(1,))


def test_checkpoint_load_reports_adapters_as_newly_initialised(minilm_dir):
    encoder = BertEncoder.from_pretrained(minilm_dir, adapters=AdapterConfig(size=64))
    report = encoder.load_report
    assert len(report.loaded) == 103 and not report.unused_in_checkpoint
    assert len(report.newly_initialized) == 6 * 2 * 4
    assert all("adapter" in m.name for m in report.newly_initialized)


# ---------------------------------------------------------------------------------------------- strategies
@pytest.fixture(scope="module")
def minilm_adapter_classifier(minilm_dir):
    keras.utils.set_random_seed(0)
    model = BertClassifier(BertEncoder.from_pretrained(minilm_dir, adapters=AdapterConfig(size=64)), 2)
    return model


def _tiny_task(n=16, seed=0):
    rng = np.random.default_rng(seed)
    data = random_bert_inputs(n, 10, 30522, rng=rng)
    labels = (data["input_word_ids"][:, 1] % 2).astype("int32")
    return data, labels


def test_adapters_strategy_trains_a_few_percent_and_freezes_the_rest(minilm_adapter_classifier):
    model = minilm_adapter_classifier
    report = apply_strategy(model, "adapters")
    print(report)
    assert 0.01 < report.fraction < 0.05
    assert report.groups["embeddings"]["trainable"] == 0 and report.groups["adapters"]["trainable"] > 0
    assert str(report).startswith("We will train 6.1e+05 parameters out of 2.3e+07, i.e. 2.6")
    before = {p: np.asarray(v).copy() for p, v in model_variables(model).items()}
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    data, labels = _tiny_task()
    model.fit(data, labels, batch_size=8, epochs=1, verbose=0)
    assert_only_trainable_changed(model, before)
    # No optimizer slots for frozen weights.
    slot_count = len([v for v in model.optimizer.variables if "momentum" in v.path])
    assert slot_count == len(model.trainable_weights)


@pytest.mark.parametrize("name, options, trains, frozen", [
    ("full", {}, ["embeddings/word_embeddings/embeddings", "pooler/dense/kernel"], []),
    ("feature_extraction", {}, ["classifier/kernel"], ["transformer_layer_1/output/kernel", "pooler/dense/kernel"]),
    ("top_k", {"k": 1}, ["transformer_layer_1/output/kernel", "transformer_layer_1/output_layer_norm/gamma",
                         "pooler/dense/kernel"], ["transformer_layer_0/output/kernel", "embeddings/layer_norm/gamma"]),
    ("bitfit", {}, ["transformer_layer_0/output/bias", "embeddings/layer_norm/beta", "classifier/kernel"],
     ["transformer_layer_0/output/kernel", "embeddings/layer_norm/gamma"]),
])
def test_strategy_trainable_sets(name, options, trains, frozen):
    model = BertClassifier(BertEncoder(**TINY), 3)
    apply_strategy(model, name, **options)
    trainable = {v.path for v in model.trainable_weights}
    assert set(trains) <= trainable and not set(frozen) & trainable


def test_strategy_errors():
    model = BertClassifier(BertEncoder(**TINY), 3)
    with pytest.raises(ValueError, match="Unknown strategy 'most'"):
        apply_strategy(model, "most")
    with pytest.raises(ValueError, match="needs k between 1 and 2"):
        apply_strategy(model, "top_k")
    with pytest.raises(ValueError, match="needs an encoder built with adapters"):
        apply_strategy(model, "adapters")
    with pytest.raises(ValueError, match=r"unknown options \['colour'\]"):
        apply_strategy(model, "full", colour="red")


# ---------------------------------------------------------------------------------------------- adapter files
def test_adapter_file_is_small_and_reloads_exactly(minilm_dir, minilm_adapter_classifier, tmp_path):
    model = minilm_adapter_classifier
    apply_strategy(model, "adapters")
    path = tmp_path / "task.adapter.safetensors"
    metadata = save_adaptation(model, path, labels=["neg", "pos"])
    full_size = os.path.getsize(os.path.join(minilm_dir, "model.safetensors"))
    assert os.path.getsize(path) < 0.05 * full_size
    fresh_base = BertEncoder.from_pretrained(minilm_dir)
    loaded = load_adaptation(fresh_base, path)
    assert loaded.adaptation_metadata["labels"] == ["neg", "pos"] and metadata["adapters"]["size"] == 64
    data, _ = _tiny_task(6, seed=3)
    np.testing.assert_array_equal(np.asarray(loaded(data)), np.asarray(model(data)))


def test_adapter_file_refuses_another_base(minilm_adapter_classifier, tmp_path):
    apply_strategy(minilm_adapter_classifier, "adapters")
    path = tmp_path / "task.safetensors"
    save_adaptation(minilm_adapter_classifier, path)
    other = BertEncoder(**TINY)
    with pytest.raises(ValueError, match="different base architecture"):
        load_adaptation(other, path)
    tampered = BertEncoder.from_pretrained("all-MiniLM-L6-v2")
    variable = model_variables(tampered)["transformer_layer_2/intermediate/kernel"]
    variable.assign(np.asarray(variable) * 1.001)
    with pytest.raises(ValueError, match="trained on a different base model: base weight fingerprint"):
        load_adaptation(tampered, path)
    (tmp_path / "plain.safetensors").write_bytes(open(path, "rb").read()[:50])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_adaptation(tampered, tmp_path / "plain.safetensors")


def test_several_tasks_share_one_base(tmp_path):
    keras.utils.set_random_seed(1)
    base = BertEncoder(**TINY)
    files, references = {}, {}
    data = random_bert_inputs(4, 7, 60)
    for task, classes in (("a", 2), ("b", 3)):
        encoder = BertEncoder(**TINY, adapters=AdapterConfig(size=8))
        copy_base_weights(base, encoder)
        model = BertClassifier(encoder, classes)
        apply_strategy(model, "adapters")
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True),
                      run_eagerly=True)
        model.fit(data, np.arange(4) % classes, epochs=2, verbose=0)
        files[task] = tmp_path / f"{task}.safetensors"
        save_adaptation(model, files[task])
        references[task] = np.asarray(model(data))
    switcher = AdaptationSwitcher(base)
    for task, path in files.items():
        switcher.add(task, path)
    for task in ("a", "b", "a", "b"):
        np.testing.assert_allclose(np.asarray(switcher.activate(task)(data)), references[task], atol=1e-6)
    encoder_bytes = sum(int(np.prod(v.shape)) * 4 for v in switcher.encoder.weights)
    assert switcher.task_bytes("a") < 0.35 * encoder_bytes  # tiny model: adapters + LayerNorms + head
    with pytest.raises(KeyError, match="Unknown task 'c'"):
        switcher.activate("c")


# ---------------------------------------------------------------------------------------------- LoRA, ablation
def test_lora_merge_gives_the_same_outputs():
    keras.utils.set_random_seed(2)
    model = BertClassifier(BertEncoder(**TINY, adapters=AdapterConfig(kind="lora", lora_rank=4)), 2)
    apply_strategy(model, "lora")
    data = random_bert_inputs(4, 7, 60)
    model.compile(optimizer=keras.optimizers.Adam(5e-2), loss=keras.losses.SparseCategoricalCrossentropy(True),
                  run_eagerly=True)
    model.fit(data, np.array([0, 1, 0, 1]), epochs=3, verbose=0)
    lora_b = model_variables(model)["transformer_layer_0/self_attention/value_lora/lora_b"]
    assert np.abs(np.asarray(lora_b)).max() > 0  # the update is not zero any more
    merged = merge_lora(model)
    assert not any("lora" in v.path for v in merged.weights)
    assert np.max(np.abs(np.asarray(merged(data)) - np.asarray(model(data)))) <= 1e-5


def test_ablating_all_adapters_recovers_the_base_model():
    keras.utils.set_random_seed(3)
    base = BertEncoder(**TINY)
    adapted = BertEncoder(**TINY, adapters=AdapterConfig(size=8, init_stddev=0.3))
    copy_base_weights(base, adapted)
    data = random_bert_inputs(3, 7, 60)
    trained = _outputs(adapted, data)
    assert not np.allclose(trained, _outputs(base, data))
    with ablate_adapters(adapted):
        np.testing.assert_array_equal(_outputs(adapted, data), _outputs(base, data))
    with ablate_adapters(adapted, layers=[0]):
        partial = _outputs(adapted, data)
        assert not np.allclose(partial, trained) and not np.allclose(partial, _outputs(base, data))
    np.testing.assert_array_equal(_outputs(adapted, data), trained)


def test_adapter_bert_checkpoint_names(tmp_path):
    """A Houlsby-adapter classifier exports under adapter-bert's names and loads back exactly."""
    source = BertClassifier(BertEncoder(**TINY, adapters=AdapterConfig(size=8)), 3)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"t{i}" for i in range(56)]), encoding="utf-8")
    directory = save_google_checkpoint(source, tmp_path / "adapter_bert", vocab_file=str(vocab))
    import tensorflow as tf

    names = dict(tf.train.list_variables(os.path.join(directory, "bert_model.ckpt")))
    assert names["bert/encoder/layer_1/attention/output/adapters/weights1"] == [16, 8]
    assert names["bert/encoder/layer_0/output/adapters/biases2"] == [1, 16]
    assert names["output_weights"] == [3, 16] and names["output_bias"] == [3]
    target = BertClassifier(BertEncoder(**TINY, adapters=AdapterConfig(size=8)), 3)
    report = load_checkpoint(target, directory)
    assert not report.missing_in_checkpoint and not report.unused_in_checkpoint
    data = random_bert_inputs(2, 6, 60)
    np.testing.assert_array_equal(np.asarray(source(data)), np.asarray(target(data)))
    # A plain encoder reads the same checkpoint and reports the adapters and the head as discarded.
    report = load_checkpoint(BertEncoder(**TINY), directory)
    assert {u.reason for u in report.discarded} == {"discarded"} and len(report.discarded) == 2 * 2 * 4 + 2
