"""Compacter (Mahabadi et al. 2021): PHM projections with shared rules (layers/phm.py) in bottleneck adapters."""

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy
from tfx_transfer.layers.phm import PhmDense, PhmRule

from conftest import TINY
from layer_checks import check_layer, copy_base_weights, random_bert_inputs, train_save_and_reload

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}
COMPACTER = AdapterConfig("compacter", size=8, phm_dim=4)


def compacter_parameters(hidden, size, n, rank, layers, slots):
    """The paper's count: n^3 shared rule numbers, and per adapter two PHM projections of r (in + out) numbers plus
    their biases (size + hidden)."""
    return n ** 3 + layers * slots * (2 * rank * (hidden + size) + size + hidden)


def test_compacter_passes_the_shared_checks_and_counts_the_papers_parameters(tmp_path):
    base = sum(int(np.prod(v.shape)) for v in BertEncoder(**TINY).weights)
    check_layer(lambda: BertEncoder(**TINY, adapters=COMPACTER), SPECS,
                lambda layer, inputs, training: layer(inputs, training=training)["sequence_output"],
                random_bert_inputs(3, 7, 60), tmp_path,
                trainable_parameters=base + compacter_parameters(16, 8, 4, 1, 2, 2))


def test_minilm_shape_counts():
    """MiniLM (H 384, 6 layers), AdapterHub's Compacter (reduction 32: m = 12, n = 4, r = 1): 14,320 numbers, against
    596,352 for Houlsby adapters of size 64."""
    assert compacter_parameters(384, 12, 4, 1, 6, 2) == 14320
    encoder = BertEncoder(vocab_size=30, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                          intermediate_size=48, max_position_embeddings=8,
                          adapters=AdapterConfig("compacter", size=12))
    adapters = [v for v in encoder.weights if "adapter" in v.path or "phm" in v.path]
    assert sum(int(np.prod(v.shape)) for v in adapters) == 14320
    assert [v.path for v in encoder.weights if "phm" in v.path] == ["phm_rule/rule"]  # one rule for every layer


def test_phm_kernel_is_the_sum_of_kronecker_products():
    rule = PhmRule(2)
    rule.build()
    dense = PhmDense(6, rule, rank=2)
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    y = np.asarray(dense(x))
    A = np.asarray(rule.rule)
    B = np.asarray(dense.w_left) @ np.asarray(dense.w_right)  # [2, 2, 3]
    W = sum(np.kron(A[i], B[i]) for i in range(2))  # [4, 6]
    np.testing.assert_allclose(y, x @ W + np.asarray(dense.bias), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by phm_dim=2"):
        PhmDense(5, rule)(x)


def test_compacter_is_the_identity_at_init_trains_alone_and_round_trips(tmp_path):
    keras.utils.set_random_seed(3)
    base = BertEncoder(**TINY)
    encoder = BertEncoder(**TINY, adapters=COMPACTER)
    copy_base_weights(base, encoder)
    data = random_bert_inputs(4, 7, 60)
    np.testing.assert_array_equal(np.asarray(encoder(data)["sequence_output"]),
                                  np.asarray(base(data)["sequence_output"]))
    model = BertClassifier(encoder, 2)
    apply_strategy(model, "adapters", train_layer_norms=False)
    train_save_and_reload(model, base, data, np.array([0, 1, 0, 1]), tmp_path)


def test_compacter_config_and_flag_refusals():
    with pytest.raises(ValueError, match="divisible by phm_dim=4"):
        AdapterConfig("compacter", size=10)
    with pytest.raises(ValueError, match="phm_rank=0"):
        AdapterConfig("compacter", size=8, phm_rank=0)
    with pytest.raises(ValueError, match="not divisible by phm_dim=3"):
        BertEncoder(**TINY, adapters=AdapterConfig("compacter", size=9, phm_dim=3))


def test_run_classifier_trains_compacter_adapters(tiny_model, tmp_path):
    from test_run_classifier import COMMON, make_glue_dir, run_job

    data_dir = make_glue_dir("SST-2", tmp_path, np.random.default_rng(0))
    out = tmp_path / "out"
    assert run_job(["--task_name=SST-2", f"--data_dir={data_dir}", f"--pretrained={tiny_model}", f"--output_dir={out}",
                    "--do_train", "--adaptation=adapters", "--adapter_kind=compacter", "--adapter_size=8",
                    "--phm_dim=4"] + COMMON) == 0
    from tfx_transfer.adaptation.files import read_adaptation

    metadata, arrays = read_adaptation(out / "final" / "adapter.safetensors")
    assert metadata["adapters"]["kind"] == "compacter" and "phm_rule/rule" in arrays
    assert run_job(["--task_name=SST-2", f"--data_dir={data_dir}", f"--pretrained={tiny_model}",
                    f"--output_dir={tmp_path / 'bad'}", "--do_train", "--adaptation=adapters",
                    "--adapter_kind=compacter", "--adapter_size=6"] + COMMON) == 2
