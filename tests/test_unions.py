"""Unions of adaptation kinds in one encoder (AdapterUnion, AdapterHub's ConfigUnion): MAM and UniPELT."""

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.layers.adapter_config import AdapterUnion

from conftest import TINY
from layer_checks import check_layer, copy_base_weights, random_bert_inputs, train_save_and_reload

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}
HIDDEN, LAYERS = TINY["hidden_size"], TINY["num_hidden_layers"]


def test_mam_passes_the_shared_checks_and_counts_prefix_plus_parallel_adapter(tmp_path):
    mam = AdapterUnion.mam(HIDDEN, prefix_length=3)
    base = sum(int(np.prod(v.shape)) for v in BertEncoder(**TINY).weights)
    size = HIDDEN // 2
    expected = LAYERS * 2 * 3 * HIDDEN + LAYERS * (HIDDEN * size + size + size * HIDDEN + HIDDEN)
    check_layer(lambda: BertEncoder(**TINY, adapters=mam), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path, trainable_parameters=base + expected)


def test_a_union_is_its_parts_together():
    """MAM = the prefix encoder's prefixes in the attention and the parallel adapter in the FFN slot: zero the adapter
    and it is the prefix-tuned encoder; the variables are the parts' own."""
    keras.utils.set_random_seed(4)
    base = BertEncoder(**TINY)
    mam = BertEncoder(**TINY, adapters=AdapterUnion.mam(HIDDEN, prefix_length=2))
    prefix = BertEncoder(**TINY, adapters=AdapterConfig(kind="prefix", prefix_length=2))
    for encoder in (mam, prefix):
        copy_base_weights(base, encoder)
    model_variables(prefix)["prefix_encoder/prefixes"].assign(model_variables(mam)["prefix_encoder/prefixes"])
    data = random_bert_inputs(2, 5, 60)
    assert not np.allclose(np.asarray(mam(data)["sequence_output"]), np.asarray(prefix(data)["sequence_output"]))
    for path, variable in model_variables(mam).items():
        if "output_adapter/up" in path:
            variable.assign(np.zeros(variable.shape, "float32"))
    np.testing.assert_allclose(np.asarray(mam(data)["sequence_output"]), np.asarray(prefix(data)["sequence_output"]),
                               atol=1e-6)


def test_union_trains_its_parts_alone_and_round_trips(tmp_path):
    keras.utils.set_random_seed(5)
    base = BertEncoder(**TINY)
    encoder = BertEncoder(**TINY, adapters=AdapterUnion.mam(HIDDEN, prefix_length=2))
    copy_base_weights(base, encoder)
    model = BertClassifier(encoder, 2)
    apply_strategy(model, "adapters")
    assert not any("layer_norm" in v.path for v in model.trainable_weights)
    loaded = train_save_and_reload(model, base, random_bert_inputs(4, 6, 60), np.array([0, 1, 0, 1]), tmp_path)
    assert loaded.encoder.adapters == encoder.adapters


def test_union_refusals():
    with pytest.raises(ValueError, match="would both fill the ffn slot"):
        AdapterUnion((AdapterConfig("pfeiffer"), AdapterConfig("parallel")))
    with pytest.raises(ValueError, match="each kind once"):
        AdapterUnion((AdapterConfig("lora"), AdapterConfig("lora")))
    with pytest.raises(ValueError, match="at least two"):
        AdapterUnion((AdapterConfig("lora"),))
    with pytest.raises(ValueError, match="trained directly"):
        AdapterUnion((AdapterConfig("prefix", prefix_projection=8), AdapterConfig("lora")))


def test_unipelt_gates_its_three_modules_per_example(tmp_path):
    """UniPELT = gated LoRA + gated prefix + gated Pfeiffer adapter; each gate is the mean over the real tokens of
    sigmoid(x W + b) (padding does not move it: the shared checks); with the LoRA and adapter gates shut, the model is
    its gated prefix alone (a shut prefix gate zeroes the prefix keys and values, which still take part in the
    softmax, as in AdapterHub)."""
    unipelt = AdapterUnion.unipelt(HIDDEN, prefix_length=2, adapter_size=4)
    base = sum(int(np.prod(v.shape)) for v in BertEncoder(**TINY).weights)
    lora = 2 * (HIDDEN * 8 + 8 * HIDDEN + HIDDEN + 1)  # query and value: A, B, and a gate each
    prefix = 2 * 2 * HIDDEN + (HIDDEN * 2 + 2)  # keys and values, and a 2-output gate
    adapter = HIDDEN * 4 + 4 + 4 * HIDDEN + HIDDEN + HIDDEN + 1  # down, up, gate
    check_layer(lambda: BertEncoder(**TINY, adapters=unipelt), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path,
                trainable_parameters=base + LAYERS * (lora + prefix + adapter))
    keras.utils.set_random_seed(6)
    encoder = BertEncoder(**TINY, adapters=unipelt)
    prefix_only = BertEncoder(**TINY, adapters=AdapterConfig("prefix", prefix_length=2, gated=True))
    copy_base_weights(encoder, prefix_only)  # the base, the prefixes and their gates: the same paths
    for path, variable in model_variables(encoder).items():
        if "lora_b" in path or "up/kernel" in path:  # the updates not zero, so that shutting their gates matters
            variable.assign(np.random.default_rng(0).normal(0, 0.3, variable.shape).astype("float32"))
    data = random_bert_inputs(3, 6, 60)

    def sequence(model):
        return np.asarray(model(data)["sequence_output"])

    assert not np.allclose(sequence(encoder), sequence(prefix_only), atol=1e-4)
    for path, variable in model_variables(encoder).items():
        if "gate/dense/bias" in path and "prefix_gate" not in path:
            variable.assign(np.full(variable.shape, -1e4, "float32"))  # sigmoid -> 0: LoRA and the adapter shut
    np.testing.assert_allclose(sequence(encoder), sequence(prefix_only), atol=1e-5)
    from tfx_transfer.adaptation import merge_adaptation

    gated_lora = BertClassifier(BertEncoder(**TINY, adapters=AdapterConfig("lora", lora_rank=2, gated=True)), 2)
    with pytest.raises(ValueError, match="ungated"):
        merge_adaptation(gated_lora)
    with pytest.raises(ValueError, match="not ia3"):
        AdapterConfig("ia3", gated=True)


@pytest.mark.parametrize("preset", ["mam", "unipelt"])
def test_run_classifier_trains_a_preset_union(preset, tiny_model, tmp_path):
    from test_run_classifier import COMMON, make_glue_dir, run_job

    from tfx_transfer.adaptation.files import read_adaptation

    data_dir = make_glue_dir("SST-2", tmp_path, np.random.default_rng(0))
    out = tmp_path / "out"
    assert run_job(["--task_name=SST-2", f"--data_dir={data_dir}", f"--pretrained={tiny_model}", f"--output_dir={out}",
                    "--do_train", "--adaptation=adapters", f"--adapter_kind={preset}"] + COMMON) == 0
    metadata, _ = read_adaptation(out / "final" / "adapter.safetensors")
    assert metadata["adapters"]["kind"] == "union" and metadata["adapters"]["name"] == preset
