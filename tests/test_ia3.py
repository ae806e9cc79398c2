"""(IA)^3 (Liu et al. 2022): learned vectors rescaling keys, values and FFN activations; `AdapterConfig(kind="ia3")`."""

import os

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy, load_adaptation, save_adaptation
from tfx_transfer.adaptation import AdaptationSwitcher, ablate_adapters, merge_adaptation, merge_lora
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.jobs.adapter_setup import adapter_config
from tfx_transfer.jobs.options import ModelOptions

from conftest import TINY
from layer_checks import assert_only_trainable_changed, check_layer, copy_base_weights, random_bert_inputs

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}
PAPER = AdapterConfig(kind="ia3")  # keys, values, FFN intermediate
WITH_CONTEXT = AdapterConfig(kind="ia3", ia3_targets=("key", "value", "attention_output", "ffn"))  # peft's BERT set


def _perturb_scales(model, seed=0):
    """(IA)^3 vectors away from one, as after training."""
    rng = np.random.default_rng(seed)
    for path, variable in model_variables(model).items():
        if path.endswith("_ia3/scale"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))


@pytest.mark.parametrize("config", [PAPER, WITH_CONTEXT], ids=["paper", "with_context"])
def test_ia3_passes_the_shared_checks(config, tmp_path):
    """Build, one fit step, .keras save/load, dropout only in training, padding invariance."""
    check_layer(lambda: BertEncoder(**TINY, adapters=config), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path)


def test_ia3_is_the_identity_at_init_and_scales_what_the_paper_says():
    base = BertEncoder(**TINY)
    adapted = BertEncoder(**TINY, adapters=WITH_CONTEXT)
    copy_base_weights(base, adapted)
    data = random_bert_inputs(3, 7, 60)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(np.asarray(adapted(data)[key]), np.asarray(base(data)[key]))
    block = adapted.get_layer("transformer_layer_0")
    x = keras.random.normal((2, 5, 16), seed=1)
    attention = block.self_attention
    scale = np.linspace(0.5, 2.0, 16).astype("float32")
    attention.ia3["key"].scale.assign(scale)
    np.testing.assert_allclose(np.asarray(attention._project("key", x, False)),
                               np.asarray(attention.key(x)) * scale, rtol=1e-6)  # l_k * (x W_k + b_k)
    attention.ia3["attention_output"].scale.assign(scale)
    np.testing.assert_allclose(np.asarray(attention._project("attention_output", x, False)),
                               np.asarray(attention.attention_output(np.asarray(x) * scale)), rtol=1e-5, atol=1e-6)


def test_ia3_trainable_parameters_are_the_papers_count_for_minilm(minilm_dir):
    """L (d_k + d_v + d_ff) = 6 (384 + 384 + 1536) = 13,824 vectors' entries, plus the classifier head; nothing
    else trains (LayerNorms stay frozen for (IA)^3 by default)."""
    model = BertClassifier(BertEncoder.from_pretrained(minilm_dir, adapters=PAPER), 2)
    report = apply_strategy(model, "adapters")
    assert report.groups["adapters"]["trainable"] == 6 * (384 + 384 + 1536) == 13_824
    assert report.groups["head"]["trainable"] == 384 * 2 + 2
    assert report.trainable == 13_824 + 770
    assert report.groups["layer_norm"]["trainable"] == 0
    with_norms = apply_strategy(model, "adapters", train_layer_norms=True)
    assert with_norms.groups["layer_norm"]["trainable"] > 0


@pytest.fixture(scope="module")
def trained_ia3_classifier():
    """A tiny (IA)^3 classifier after a few steps at a high learning rate, with its base before training."""
    keras.utils.set_random_seed(5)
    model = BertClassifier(BertEncoder(**TINY, adapters=WITH_CONTEXT), 2)
    apply_strategy(model, "adapters")
    before = {p: np.asarray(v).copy() for p, v in model_variables(model).items()}
    data = random_bert_inputs(8, 7, 60)
    model.compile(optimizer=keras.optimizers.AdamW(5e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(data, np.arange(8) % 2, batch_size=4, epochs=3, verbose=0)
    return model, before, data


def test_ia3_training_moves_the_vectors_and_leaves_the_base_bit_identical(trained_ia3_classifier):
    model, before, _ = trained_ia3_classifier
    trainable = {v.path for v in model.trainable_weights}
    assert {p for p in trainable if "_ia3/" in p} == {p for p in before if "_ia3/" in p}
    assert_only_trainable_changed(model, before)


def test_ia3_file_holds_the_vectors_and_reloads_exactly(trained_ia3_classifier, tmp_path):
    model, _, data = trained_ia3_classifier
    path = tmp_path / "task.ia3.safetensors"
    metadata = save_adaptation(model, path, labels=["a", "b"])
    assert metadata["adapters"]["kind"] == "ia3"
    assert metadata["adapters"]["ia3_targets"] == ["key", "value", "attention_output", "ffn"]
    from safetensors.numpy import load_file

    saved = load_file(path)
    assert sorted(p for p in saved if "ia3" in p) == sorted(p for p in model_variables(model) if "ia3" in p)
    assert all("ia3" in p or p.startswith("classifier") for p in saved), sorted(saved)
    base = BertEncoder(**TINY)
    copy_base_weights(model.encoder, base)
    loaded = load_adaptation(base, path)
    np.testing.assert_array_equal(np.asarray(loaded(data)), np.asarray(model(data)))
    assert os.path.getsize(path) < 16_384


def test_ia3_tasks_switch_on_one_base(tmp_path):
    keras.utils.set_random_seed(7)
    base = BertEncoder(**TINY)
    data = random_bert_inputs(4, 7, 60)
    files, references = {}, {}
    for task, seed in (("a", 1), ("b", 2)):
        model = BertClassifier(BertEncoder(**TINY, adapters=PAPER), 3)
        copy_base_weights(base, model.encoder)
        _perturb_scales(model, seed)
        files[task] = tmp_path / f"{task}.safetensors"
        save_adaptation(model, files[task])
        references[task] = np.asarray(model(data))
    switcher = AdaptationSwitcher(base)
    for task, path in files.items():
        switcher.add(task, path)
    for task in ("a", "b", "a"):
        np.testing.assert_allclose(np.asarray(switcher.activate(task)(data)), references[task], atol=1e-6)


@pytest.mark.parametrize("config", [PAPER, WITH_CONTEXT], ids=["paper", "with_context"])
def test_ia3_merges_into_the_kernels(config):
    keras.utils.set_random_seed(6)
    model = BertClassifier(BertEncoder(**TINY, adapters=config), 2)
    _perturb_scales(model)
    data = random_bert_inputs(4, 7, 60)
    merged = merge_adaptation(model)
    assert not any("ia3" in v.path for v in merged.weights)
    assert merged.encoder.adapters is None
    assert np.max(np.abs(np.asarray(merged(data)) - np.asarray(model(data)))) <= 1e-5
    with pytest.raises(ValueError, match="merge_lora needs"):
        merge_lora(model)


def test_ablating_ia3_restores_the_base():
    base = BertEncoder(**TINY)
    adapted = BertEncoder(**TINY, adapters=PAPER)
    copy_base_weights(base, adapted)
    _perturb_scales(adapted)
    data = random_bert_inputs(3, 7, 60)
    trained = np.asarray(adapted(data)["sequence_output"])
    with ablate_adapters(adapted):
        np.testing.assert_array_equal(np.asarray(adapted(data)["sequence_output"]),
                                      np.asarray(base(data)["sequence_output"]))
    np.testing.assert_array_equal(np.asarray(adapted(data)["sequence_output"]), trained)


def test_ia3_config_and_flags():
    assert adapter_config(ModelOptions(adaptation="adapters", adapter_kind="ia3")) == PAPER
    with pytest.raises(ValueError, match="ia3_targets"):
        AdapterConfig(kind="ia3", ia3_targets=("query",))
    with pytest.raises(ValueError, match="ia3_targets"):
        AdapterConfig(kind="ia3", ia3_targets=())
    assert AdapterConfig.from_dict(WITH_CONTEXT.to_dict()) == WITH_CONTEXT
    assert AdapterConfig.from_dict({"kind": "houlsby"}).ia3_targets == ("key", "value", "ffn")  # older files
