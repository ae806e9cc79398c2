"""BertEncoder on tiny configs: dict contract, shared checks, variable shapes, serialization, construction."""

import json

import keras
import numpy as np
import pytest

from tfx_transfer import BertConfig, BertEncoder

from conftest import TINY
from layer_checks import check_layer, random_bert_inputs

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}


def test_dict_contract():
    encoder = BertEncoder(**TINY)
    outputs = encoder(random_bert_inputs(3, 7, 60))
    assert set(outputs) == {"sequence_output", "pooled_output", "encoder_outputs", "default"}
    assert outputs["sequence_output"].shape == (3, 7, 16)
    assert outputs["pooled_output"].shape == (3, 16)
    assert len(outputs["encoder_outputs"]) == 2 and all(o.shape == (3, 7, 16) for o in outputs["encoder_outputs"])
    np.testing.assert_array_equal(outputs["default"], outputs["pooled_output"])
    np.testing.assert_array_equal(outputs["encoder_outputs"][-1], outputs["sequence_output"])
    assert {i.name for i in encoder.inputs} == {"input_word_ids", "input_mask", "input_type_ids"}


def test_shared_checks(tmp_path):
    # Output mixes every weight: sequence_output plus the pooled vector broadcast over positions.
    check_layer(lambda: BertEncoder(**TINY), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path)


def test_variable_batch_and_sequence_length_in_one_traced_function():
    encoder = BertEncoder(**TINY)
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(inputs):
        return encoder(inputs)["sequence_output"]

    for batch, seq in ((2, 5), (4, 9), (1, 32)):
        assert tuple(run(random_bert_inputs(batch, seq, 60, lengths=[seq] * batch)).shape) == (batch, seq, 16)


def test_encoder_keras_round_trip_keeps_all_outputs(tmp_path):
    encoder = BertEncoder(**TINY, hidden_act="gelu_approximate")
    data = random_bert_inputs(2, 6, 60)
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, BertEncoder) and loaded.bert_config == encoder.bert_config
    a, b = encoder(data), loaded(data)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(a[key], b[key])
    for x, y in zip(a["encoder_outputs"], b["encoder_outputs"]):
        np.testing.assert_array_equal(x, y)


def test_weights_file_round_trip(tmp_path):
    encoder = BertEncoder(**TINY)
    path = str(tmp_path / "encoder.weights.h5")
    encoder.save_weights(path)
    other = BertEncoder(**TINY)
    other.load_weights(path)
    data = random_bert_inputs(2, 6, 60)
    np.testing.assert_array_equal(encoder(data)["pooled_output"], other(data)["pooled_output"])


def test_variable_paths_are_stable():
    """Checkpoint maps target these paths; changing them breaks every assignment map."""
    encoder = BertEncoder(**dict(TINY, num_hidden_layers=1))
    block = ["self_attention/query", "self_attention/key", "self_attention/value", "self_attention/attention_output",
             "intermediate", "output"]
    expected = {"embeddings/word_embeddings/embeddings", "embeddings/position_embeddings/embeddings",
                "embeddings/token_type_embeddings/embeddings", "embeddings/layer_norm/gamma",
                "embeddings/layer_norm/beta", "pooler/dense/kernel", "pooler/dense/bias",
                "transformer_layer_0/self_attention_layer_norm/gamma",
                "transformer_layer_0/self_attention_layer_norm/beta",
                "transformer_layer_0/output_layer_norm/gamma", "transformer_layer_0/output_layer_norm/beta"}
    expected |= {f"transformer_layer_0/{d}/{v}" for d in block for v in ("kernel", "bias")}
    assert {w.path for w in encoder.weights} == expected
    assert len(encoder.weights) == len(expected)


def test_from_config_file_and_overrides(tmp_path):
    values = dict(TINY, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    (tmp_path / "bert_config.json").write_text(json.dumps(values), encoding="utf-8")
    encoder = BertEncoder.from_config_file(tmp_path / "bert_config.json", hidden_act="gelu_new",
                                           hidden_dropout_prob=0.0)
    assert encoder.bert_config.hidden_act == "gelu_approximate"
    assert encoder.bert_config.hidden_dropout_prob == 0.0
    with pytest.raises(TypeError, match=r"Unknown encoder option\(s\) \['hiden_size'\]"):
        BertEncoder.from_bert_config(BertConfig(**TINY), hiden_size=8)


def test_invalid_architecture_is_rejected_before_building():
    with pytest.raises(ValueError, match="hidden_size=18 is not divisible by num_attention_heads=4"):
        BertEncoder(**dict(TINY, hidden_size=18))


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a directory, a checkpoint prefix nor a packaged model"):
        BertEncoder.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps(TINY), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no weights; expected model.safetensors"):
        BertEncoder.from_pretrained(tmp_path)
