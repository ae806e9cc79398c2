"""BertConfig reads Google and Hugging Face configs and rejects bad values with clear messages."""

import json

import pytest

from tfx_transfer.config import BertConfig

GOOGLE = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
          "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 512,
          "num_attention_heads": 12, "num_hidden_layers": 12, "type_vocab_size": 2, "vocab_size": 30522}


def _write(tmp_path, values, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def test_google_bert_config(tmp_path):
    config = BertConfig.from_json_file(_write(tmp_path, GOOGLE, "bert_config.json"))
    assert config.hidden_size == 768 and config.layer_norm_eps == 1e-12 and config.head_size == 64
    # google-research/bert's "gelu" is the tanh approximation (modeling.py), so that is what we build.
    assert config.hidden_act == "gelu_approximate"
    exact = BertConfig.from_json_file(_write(tmp_path, dict(GOOGLE, gelu_approximate=False), "exact.json"))
    assert exact.hidden_act == "gelu"
    assert BertConfig.from_dict(GOOGLE, dialect="hf").hidden_act == "gelu"


@pytest.mark.parametrize("act", ["gelu", "gelu_approximate", "relu"])
def test_google_and_hf_dicts_round_trip(act):
    config = BertConfig(vocab_size=99, hidden_size=32, num_attention_heads=4, hidden_act=act, layer_norm_eps=1e-12)
    google = config.to_google_dict()
    assert "layer_norm_eps" not in google and google["hidden_act"] in ("gelu", "relu")
    assert BertConfig.from_dict(google) == config
    hf = config.to_hf_dict()
    assert hf["model_type"] == "bert" and BertConfig.from_dict(hf) == config


def test_hf_config_and_directory_lookup(tmp_path):
    values = dict(GOOGLE, model_type="bert", architectures=["BertModel"], hidden_act="gelu_new",
                  layer_norm_eps=1e-7, position_embedding_type="absolute", use_cache=True, pad_token_id=0)
    _write(tmp_path, values)
    config = BertConfig.from_json_file(tmp_path)  # a directory works too
    assert config.hidden_act == "gelu_approximate" and config.layer_norm_eps == 1e-7


@pytest.mark.parametrize("act, canonical", [("gelu", "gelu"), ("gelu_new", "gelu_approximate"),
                                            ("gelu_pytorch_tanh", "gelu_approximate"),
                                            ("gelu_approximate", "gelu_approximate"), ("relu", "relu"),
                                            ("swish", "silu")])
def test_activation_names(act, canonical):
    assert BertConfig(vocab_size=10, hidden_act=act).hidden_act == canonical


def test_packaged_minilm_config(minilm_dir):
    config = BertConfig.from_json_file(f"{minilm_dir}/config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.vocab_size, config.hidden_act) == (384, 6, 12, 1536, 30522, "gelu")


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 100, "num_attention_heads": 12},
     "hidden_size=100 is not divisible by num_attention_heads=12"),
    ({"num_hidden_layers": 0}, "num_hidden_layers=0 must be a positive integer"),
    ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob=1.5 must be in \[0, 1\)"),
    ({"hidden_act": "mish"}, "hidden_act='mish' is not supported"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key' is not supported"),
    ({"model_type": "roberta"}, "model_type='roberta' is not a BERT model"),
])
def test_bad_configs_name_field_and_value(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        BertConfig.from_json_file(_write(tmp_path, dict(GOOGLE, **change)))


def test_missing_vocab_size_bad_json_and_missing_file(tmp_path):
    values = dict(GOOGLE)
    del values["vocab_size"]
    with pytest.raises(ValueError, match="'vocab_size' is missing"):
        BertConfig.from_json_file(_write(tmp_path, values))
    bad = tmp_path / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertConfig.from_json_file(bad)
    with pytest.raises(FileNotFoundError, match="File not found: .*expected a BERT config"):
        BertConfig.from_json_file(tmp_path / "nope.json")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No config.json or bert_config.json"):
        BertConfig.from_json_file(empty)
