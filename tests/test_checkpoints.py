"""load_checkpoint: Hugging Face safetensors through the built-in map, reports, strictness, user maps."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import TINY
from layer_checks import random_bert_inputs
from tfx_transfer import BertEncoder
from tfx_transfer.checkpoints import (AssignmentMap, CheckpointMismatchError, Reshape, Rule, Transpose,
                                      load_checkpoint, model_variables)


def hf_tensors(encoder, prefix=""):
    """Our encoder's weights under Hugging Face BertModel names (written out by hand, independent of hf.py)."""
    w = {path: np.asarray(v) for path, v in model_variables(encoder).items()}
    out = {
        "embeddings.word_embeddings.weight": w["embeddings/word_embeddings/embeddings"],
        "embeddings.position_embeddings.weight": w["embeddings/position_embeddings/embeddings"],
        "embeddings.token_type_embeddings.weight": w["embeddings/token_type_embeddings/embeddings"],
        "embeddings.LayerNorm.weight": w["embeddings/layer_norm/gamma"],
        "embeddings.LayerNorm.bias": w["embeddings/layer_norm/beta"],
        "pooler.dense.weight": w["pooler/dense/kernel"].T,
        "pooler.dense.bias": w["pooler/dense/bias"],
    }
    for i in range(encoder.bert_config.num_hidden_layers):
        ours, hf = f"transformer_layer_{i}/", f"encoder.layer.{i}."
        pairs = {"attention.self.query": "self_attention/query", "attention.self.key": "self_attention/key",
                 "attention.self.value": "self_attention/value",
                 "attention.output.dense": "self_attention/attention_output",
                 "intermediate.dense": "intermediate", "output.dense": "output"}
        for hf_name, our_name in pairs.items():
            out[hf + hf_name + ".weight"] = w[ours + our_name + "/kernel"].T
            out[hf + hf_name + ".bias"] = w[ours + our_name + "/bias"]
        for hf_name, our_name in {"attention.output.LayerNorm": "self_attention_layer_norm",
                                  "output.LayerNorm": "output_layer_norm"}.items():
            out[hf + hf_name + ".weight"] = w[ours + our_name + "/gamma"]
            out[hf + hf_name + ".bias"] = w[ours + our_name + "/beta"]
    out["embeddings.position_ids"] = np.arange(encoder.bert_config.max_position_embeddings)[None].astype("int64")
    return {prefix + k: np.ascontiguousarray(v) for k, v in out.items()}


@pytest.fixture
def source():
    return BertEncoder(**TINY)


def _save(tmp_path, tensors, name="model.safetensors"):
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def _same_outputs(a, b):
    data = random_bert_inputs(2, 6, 60)
    np.testing.assert_array_equal(a(data)["sequence_output"], b(data)["sequence_output"])
    np.testing.assert_array_equal(a(data)["pooled_output"], b(data)["pooled_output"])


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_hf_round_trip_with_and_without_prefix(tmp_path, source, prefix):
    path = _save(tmp_path, hf_tensors(source, prefix))
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, path)
    assert len(report.loaded) == len(target.weights) and not report.missing_in_checkpoint
    assert not report.unused_in_checkpoint and report.ignored == [prefix + "embeddings.position_ids"]
    _same_outputs(source, target)


def test_directory_sharded_index_and_old_layer_norm_names(tmp_path, source):
    tensors = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in hf_tensors(source, "bert.").items()}
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, tmp_path)  # the directory
    assert report.format == "hf_safetensors" and not report.missing_in_checkpoint
    _same_outputs(source, target)


def test_pretraining_heads_are_discarded_and_allowed_in_strict_mode(tmp_path, source):
    tensors = hf_tensors(source, "bert.")
    tensors["cls.predictions.bias"] = np.zeros(60, "float32")
    tensors["cls.predictions.transform.dense.weight"] = np.zeros((16, 16), "float32")
    tensors["cls.seq_relationship.weight"] = np.zeros((2, 16), "float32")
    report = load_checkpoint(BertEncoder(**TINY), _save(tmp_path, tensors))
    assert sorted(u.name for u in report.discarded) == ["cls.predictions.bias", "cls.predictions.transform.dense.weight",
                                                        "cls.seq_relationship.weight"]
    assert {u.reason for u in report.discarded} == {"discarded"}
    text = str(report)
    assert "Parameters discarded from the pretrained model (3): cls.predictions.bias [60]" in text
    assert "Parameters added in the adaptation model, newly initialized (0): none" in text


def test_shape_mismatch_names_variable_and_both_shapes(tmp_path, source):
    tensors = hf_tensors(source)
    tensors["encoder.layer.1.attention.self.query.weight"] = np.zeros((16, 12), "float32")
    target = BertEncoder(**TINY)
    before = [np.asarray(w).copy() for w in target.weights]
    with pytest.raises(ValueError) as error:
        load_checkpoint(target, _save(tmp_path, tensors))
    message = str(error.value)
    assert "'encoder.layer.1.attention.self.query.weight' has shape [16, 12]" in message
    assert "'transformer_layer_1/self_attention/query/kernel' has shape [16, 16]" in message
    # Nothing was assigned: a failed load leaves the model as it was.
    assert all(np.array_equal(b, np.asarray(w)) for b, w in zip(before, target.weights))


def test_strict_mode_raises_on_missing_and_unknown(tmp_path, source):
    tensors = hf_tensors(source)
    del tensors["pooler.dense.weight"]
    tensors["mystery.weight"] = np.zeros(3, "float32")
    path = _save(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(BertEncoder(**TINY), path)
    message = str(error.value)
    assert "1 model variable(s) not in the checkpoint: pooler/dense/kernel" in message
    assert "1 checkpoint tensor(s) unused: mystery.weight (unmatched)" in message
    assert error.value.report.missing_in_checkpoint[0].shape == (16, 16)

    report = load_checkpoint(BertEncoder(**TINY), path, strict=False)
    assert [m.name for m in report.newly_initialized] == ["pooler/dense/kernel"]
    report = load_checkpoint(BertEncoder(**TINY), path, allow_missing=[r"pooler/.*"], allow_unused=[r"mystery\..*"])
    assert len(report.loaded) == len(BertEncoder(**TINY).weights) - 1


def test_deeper_checkpoint_into_shallower_model_reports_not_in_model(tmp_path):
    deep = BertEncoder(**dict(TINY, num_hidden_layers=3))
    path = _save(tmp_path, hf_tensors(deep))
    report = load_checkpoint(BertEncoder(**TINY), path, strict=False)
    unused = report.unused_in_checkpoint
    assert len(unused) == 16 and {u.reason for u in unused} == {"not in model"}
    assert unused[0].target.startswith("transformer_layer_2/")


def test_user_map_prefix_rename_and_bottom_layers(tmp_path, source):
    tensors = {k.replace("encoder.", "student.encoder.", 1) if k.startswith("encoder.") else k: v
               for k, v in hf_tensors(source).items()}
    path = _save(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(BertEncoder(**TINY), path)
    # A rename strips the prefix; the built-in HF rules then map the rewritten names.
    rename = AssignmentMap(rename=[(r"^student\.", "")], name="student")
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, path, assignment_map=rename)
    assert sum(1 for item in report.loaded if item.source.startswith("student.")) == 32
    _same_outputs(source, target)
    # A user rule of its own, tried before the built-in ones (here: swap query and key, a deliberate misuse).
    swap = AssignmentMap(rules=[Rule(r"encoder\.layer\.0\.attention\.self\.query\.weight",
                                     "transformer_layer_0/self_attention/key/kernel", ("transpose",)),
                                Rule(r"encoder\.layer\.0\.attention\.self\.key\.weight",
                                     "transformer_layer_0/self_attention/query/kernel", ("transpose",))])
    swapped = BertEncoder(**TINY)
    load_checkpoint(swapped, path, assignment_map=AssignmentMap(rename=[(r"^student\.", "")]).then(swap))
    np.testing.assert_array_equal(np.asarray(model_variables(swapped)["transformer_layer_0/self_attention/key/kernel"]),
                                  np.asarray(model_variables(source)["transformer_layer_0/self_attention/query/kernel"]))
    # Loading only the bottom layer: discard layer 1 in the user map, allow it to stay newly initialised.
    bottom = AssignmentMap(discard=[r"encoder\.layer\.1\..*"], name="bottom-1")
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, _save(tmp_path, hf_tensors(source), "plain.safetensors"),
                             assignment_map=bottom, allow_missing=[r"transformer_layer_1/.*"])
    assert {m.name.split("/")[0] for m in report.missing_in_checkpoint} == {"transformer_layer_1"}
    np.testing.assert_array_equal(np.asarray(model_variables(target)["transformer_layer_0/output/kernel"]),
                                  np.asarray(model_variables(source)["transformer_layer_0/output/kernel"]))


def test_assignment_map_json_round_trip_and_transforms(tmp_path):
    amap = AssignmentMap(rules=[Rule("a/(.*)", r"b/\1", (Transpose(), Reshape([4, 2])))], ignore=["x.*"],
                         discard=["y.*"], rename=[("^old/", "a/")], name="mine")
    path = tmp_path / "map.json"
    path.write_text(json.dumps(amap.to_config()), encoding="utf-8")
    loaded = AssignmentMap.from_json_file(path)
    resolution = loaded.resolve("a/k")
    assert resolution.kind == "load" and resolution.target == "b/k"
    assert resolution.transforms == (Transpose(), Reshape([4, 2]))
    array = np.arange(8).reshape(2, 4)
    for t in resolution.transforms:
        array = t(array, (4, 2))
    np.testing.assert_array_equal(array, np.arange(8).reshape(2, 4).T.reshape(4, 2))
    assert loaded.resolve("x1").kind == "ignore" and loaded.resolve("y1").kind == "discard"
    assert loaded.resolve("z").kind == "unmatched"
    assert loaded.resolve("old/k").target == "b/k"
    chained = AssignmentMap(discard=["a/k"]).then(loaded)
    assert chained.resolve("a/k").kind == "discard" and chained.resolve("a/j").target == "b/j"


@pytest.mark.parametrize("config, message", [
    ({"rules": [{"pattern": "(", "target": "x"}]}, "not a valid regex"),
    ({"rules": [{"pattern": "a", "target": "b", "transforms": ["rotate"]}]}, "Unknown transform 'rotate'"),
    ({"rules": [{"from": "a"}]}, "expected keys 'pattern', 'target'"),
    ({"rulez": []}, r"unknown keys \['rulez'\]"),
    ({"rename": [["a", "b", "c"]]}, "are \\(pattern, replacement\\) pairs"),
])
def test_bad_assignment_maps(config, message):
    with pytest.raises(ValueError, match=message):
        AssignmentMap.from_config(config)


def test_two_tensors_onto_one_variable(tmp_path, source):
    tensors = hf_tensors(source)
    tensors["bert.pooler.dense.bias"] = tensors["pooler.dense.bias"]
    with pytest.raises(ValueError, match="both map to the model variable 'pooler/dense/bias'"):
        load_checkpoint(BertEncoder(**TINY), _save(tmp_path, tensors))


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="Unknown checkpoint format .* Known formats: hf_safetensors"):
        load_checkpoint(BertEncoder(**TINY), tmp_path)
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        load_checkpoint(BertEncoder(**TINY), tmp_path / "nope.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(BertEncoder(**TINY), tmp_path / "broken.safetensors")


def test_packaged_minilm_loads_completely(minilm_dir):
    encoder = BertEncoder.from_pretrained("all-MiniLM-L6-v2")
    report = encoder.load_report
    assert not report.missing_in_checkpoint and not report.unused_in_checkpoint
    assert report.ignored == ["embeddings.position_ids"]
    assert len(report.loaded) == len(encoder.weights) == 103
    assert report.num_loaded_parameters == encoder.count_params() == 22_713_216
    checkpoint = load_file(f"{minilm_dir}/model.safetensors")
    np.testing.assert_array_equal(np.asarray(model_variables(encoder)["transformer_layer_5/intermediate/kernel"]),
                                  checkpoint["encoder.layer.5.intermediate.dense.weight"].T)


def test_packaged_minilm_wrong_shape_message(tmp_path, minilm_dir):
    tensors = load_file(f"{minilm_dir}/model.safetensors")
    tensors["encoder.layer.3.output.dense.weight"] = tensors["encoder.layer.3.output.dense.weight"][:, :1000]
    with pytest.raises(ValueError, match=r"'encoder.layer.3.output.dense.weight' has shape \[384, 1000\].*"
                                         r"'transformer_layer_3/output/kernel' has shape \[1536, 384\]"):
        load_checkpoint(BertEncoder.from_config_file(f"{minilm_dir}/config.json"), _save(tmp_path, tensors))
