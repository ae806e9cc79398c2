"""Hugging Face peft adapters, as peft 0.21.2 saved them (tests/fixtures/peft, producers/hf_peft.py), on our encoder.

The fixtures are IA3 and LoRA adapters of the hf/bert_model fixture (transformers' BertModel), each trained 3 steps
by peft; expected.npz holds the PeftModel's own outputs."""

import json
import shutil

import numpy as np
import pytest

from fixture_utils import TOLERANCE, encoder_differences, expected, inputs, path
from tfx_transfer import BertEncoder
from tfx_transfer.adaptation import load_adaptation, load_peft_adapter, merge_adaptation, save_adaptation


@pytest.fixture(scope="module")
def base():
    return BertEncoder.from_pretrained(path("hf", "bert_model"))


@pytest.mark.parametrize("name, kind, targets, layers", [
    ("ia3", "ia3", ("key", "value", "attention_output", "ffn"), None),  # peft's BERT default: both output.dense
    ("ia3_layers", "ia3", ("key", "value", "ffn"), (1,)),  # the paper's set, by regex, on one layer
    ("lora", "lora", ("query", "value", "attention_output"), None),
])
def test_peft_adapter_gives_the_peft_models_outputs(base, name, kind, targets, layers):
    encoder = load_peft_adapter(base, path("peft", name))
    config = encoder.adapters
    assert config.kind == kind and config.layers == layers
    assert (config.ia3_targets if kind == "ia3" else config.lora_targets) == targets
    if kind == "lora":
        assert (config.lora_rank, config.lora_alpha, config.lora_dropout) == (4, 8.0, 0.1)
    stored = expected("peft", name)
    differences = encoder_differences(encoder, stored)
    assert max(differences.values()) < TOLERANCE, differences
    plain = encoder_differences(base, stored)  # the adapter matters: the base alone is far from peft's outputs
    assert min(plain.values()) > 100 * TOLERANCE, plain
    merged = merge_adaptation(encoder)  # served as a plain BERT
    assert merged.adapters is None
    assert max(encoder_differences(merged, stored).values()) < TOLERANCE


def test_peft_adapter_round_trips_through_our_adapter_file(base, tmp_path):
    encoder = load_peft_adapter(base, path("peft", "ia3"))
    save_adaptation(encoder, tmp_path / "ia3.safetensors")
    reloaded = load_adaptation(BertEncoder.from_pretrained(path("hf", "bert_model")), tmp_path / "ia3.safetensors")
    x = inputs(expected("peft", "ia3"))
    np.testing.assert_array_equal(np.asarray(reloaded(x)["pooled_output"]), np.asarray(encoder(x)["pooled_output"]))


def _edited_copy(tmp_path, name, config_changes=None, rename=None):
    """A copy of fixture `name` with adapter_config.json values changed or a tensor renamed (`rename`: old -> new)."""
    from safetensors.numpy import load_file, save_file

    directory = tmp_path / name
    shutil.copytree(path("peft", name), directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    config.update(config_changes or {})
    (directory / "adapter_config.json").write_text(json.dumps(config))
    if rename:
        tensors = load_file(directory / "adapter_model.safetensors")
        tensors = {rename.get(k, k): v for k, v in tensors.items()}
        save_file(tensors, directory / "adapter_model.safetensors")
    return directory


IA3_FFN = "base_model.model.encoder.layer.0.output.dense.ia3_l"
LORA_QUERY_A = "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight"


@pytest.mark.parametrize("name, config_changes, rename, message", [
    ("ia3", {"peft_type": "PREFIX_TUNING"}, None, "peft_type 'PREFIX_TUNING'"),
    ("lora", {"use_dora": True}, None, "use_dora=True"),
    ("lora", {"rank_pattern": {"query": 8}}, None, "rank_pattern"),
    ("lora", {"bias": "all"}, None, "bias='all'"),
    ("ia3", None, {IA3_FFN: "base_model.model.encoder.layer.0.intermediate.dense.ia3_l"},
     "the input of layer 0's intermediate.dense has no tfx_transfer equivalent"),
    ("ia3", None, {IA3_FFN: "base_model.model.classifier.modules_to_save.default.weight"}, "modules_to_save"),
    ("ia3", None, {IA3_FFN: "base_model.model.encoder.layer.7.output.dense.ia3_l"}, "layer 7 of a 2-layer encoder"),
    ("lora", None, {LORA_QUERY_A: LORA_QUERY_A.replace("query", "key")}, "layer 0's attention.self.* has no lora_"),
])
def test_peft_adapters_we_cannot_represent_are_refused(base, tmp_path, name, config_changes, rename, message):
    directory = _edited_copy(tmp_path, name, config_changes, rename)
    with pytest.raises(ValueError, match=message):
        load_peft_adapter(base, directory)


def test_ia3_targets_that_differ_between_layers_are_refused(base, tmp_path):
    directory = _edited_copy(tmp_path, "ia3", rename={IA3_FFN: IA3_FFN.replace("layer.0", "layer.9")})
    with pytest.raises(ValueError, match="layer 9"):
        load_peft_adapter(base, directory)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(path("peft", "ia3", "adapter_model.safetensors"))
    del tensors[IA3_FFN]
    save_file(tensors, directory / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="differ between layers"):
        load_peft_adapter(base, directory)


def test_a_directory_without_peft_files_is_refused(base, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_peft_adapter(base, tmp_path)
