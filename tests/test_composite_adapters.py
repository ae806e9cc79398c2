"""Adapters composed inside the encoder: Stack and Fuse (layers/composite.py), their members loaded from adapters
trained alone, and composition files that refer to their members by name and fingerprint."""

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy, load_adaptation, save_adaptation
from tfx_transfer.adaptation import AdaptationSwitcher, ablate_adapters
from tfx_transfer.adaptation.files import read_adaptation
from tfx_transfer.adaptation.members import member_arrays
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.layers.adapter_config import AdapterComposition

from conftest import TINY
from layer_checks import assert_only_trainable_changed, check_layer, copy_base_weights, random_bert_inputs

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}
PFEIFFER = AdapterConfig("pfeiffer", size=8, init_stddev=0.2)
HOULSBY = AdapterConfig("houlsby", size=4, init_stddev=0.2)
STACK = AdapterComposition("stack", (("domain", PFEIFFER), ("task", HOULSBY)))
FUSE = AdapterComposition("fuse", (("a", PFEIFFER), ("b", PFEIFFER), ("c", PFEIFFER)))


def _sequence(encoder, data):
    return np.asarray(encoder(data, training=False)["sequence_output"])


@pytest.mark.parametrize("composition", [STACK, FUSE], ids=["stack", "fuse"])
def test_compositions_pass_the_shared_checks(composition, tmp_path):
    """Build, one fit step, .keras save/load, dropout only in training, padding invariance, mixed precision."""
    hidden, blocks = TINY["hidden_size"], TINY["num_hidden_layers"]

    def bottleneck(m):  # down [H, m] + m, up [m, H] + H
        return hidden * m + m + m * hidden + hidden

    if composition.kind == "stack":
        expected = blocks * (bottleneck(8) + 2 * bottleneck(4))  # pfeiffer in one slot, houlsby in both
    else:
        expected = blocks * (3 * bottleneck(8) + 3 * hidden * hidden + 2 * hidden)  # + W_Q, W_K (biased), W_V
    check_layer(lambda: BertEncoder(**TINY, adapters=composition), SPECS,
                lambda layer, inputs, training: layer(inputs, training=training)["sequence_output"],
                random_bert_inputs(3, 7, 60), tmp_path,
                trainable_parameters=sum(int(np.prod(v.shape)) for v in BertEncoder(**TINY).weights) + expected)


def test_stack_applies_its_adapters_in_order_and_order_matters():
    keras.utils.set_random_seed(4)
    base = BertEncoder(**TINY)
    data = random_bert_inputs(3, 6, 60)
    stacked = BertEncoder(**TINY, adapters=AdapterComposition("stack", (("first", PFEIFFER), ("second", PFEIFFER))))
    swapped = BertEncoder(**TINY, adapters=AdapterComposition("stack", (("second", PFEIFFER), ("first", PFEIFFER))))
    for encoder in (stacked, swapped):
        copy_base_weights(base, encoder)
    for path, variable in model_variables(stacked).items():  # the same adapters, in the other order
        model_variables(swapped)[path].assign(variable)
    assert not np.allclose(_sequence(stacked, data), _sequence(swapped, data), atol=1e-4)
    # A stack of one adapter is that adapter (the same arrays under the member's name).
    alone = BertEncoder(**TINY, adapters=PFEIFFER)
    one = BertEncoder(**TINY, adapters=AdapterComposition("stack", (("only", PFEIFFER),)))
    for encoder in (alone, one):
        copy_base_weights(base, encoder)
    for path, variable in model_variables(alone).items():
        if "adapter" in path:
            model_variables(one)[path.replace("output_adapter/", "output_adapter/only/")].assign(variable)
    np.testing.assert_array_equal(_sequence(one, data), _sequence(alone, data))


def test_fusion_of_one_adapter_is_that_adapter_at_initialisation():
    keras.utils.set_random_seed(5)
    base = BertEncoder(**TINY)
    data = random_bert_inputs(3, 6, 60)
    alone = BertEncoder(**TINY, adapters=HOULSBY)
    fused = BertEncoder(**TINY, adapters=AdapterComposition("fuse", (("only", HOULSBY),)))
    for encoder in (alone, fused):
        copy_base_weights(base, encoder)
    for path, array in member_arrays("only", {"adapters": HOULSBY.to_dict()},
                                     {p: np.asarray(v) for p, v in model_variables(alone).items()
                                      if "adapter" in p}).items():
        model_variables(fused)[path].assign(array)
    np.testing.assert_allclose(_sequence(fused, data), _sequence(alone, data), atol=1e-6)
    assert float(sum(fused.losses)) == 0.0  # W_V = I: no pull yet
    with ablate_adapters(fused):  # the members' deltas zero: the base model
        np.testing.assert_allclose(_sequence(fused, data), _sequence(base, data), atol=1e-6)


def test_fusion_attends_over_the_adapters_per_token(tmp_path):
    """out = h + sum_n softmax_n(q . k_n) v_n, checked against numpy on one slot."""
    from tfx_transfer.layers.adapters import BottleneckAdapter
    from tfx_transfer.layers.composite import AdapterFusion

    keras.utils.set_random_seed(6)
    adapters = [BottleneckAdapter(4, init_stddev=0.3, name=n) for n in ("a", "b")]
    fusion = AdapterFusion(adapters, regularization=0.5)
    h = np.random.default_rng(0).normal(size=(2, 3, 16)).astype("float32")
    fusion.build(h.shape)
    fusion.value.kernel.assign(np.eye(16, dtype="float32") + 0.1)
    out = np.asarray(fusion(h))
    deltas = np.stack([np.asarray(a.delta(h)) for a in adapters], axis=2)  # [B, T, N, H]
    q = h @ np.asarray(fusion.query.kernel) + np.asarray(fusion.query.bias)
    k = deltas @ np.asarray(fusion.key.kernel) + np.asarray(fusion.key.bias)
    scores = np.einsum("bth,btnh->btn", q, k)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = h + np.einsum("btn,btnh->bth", weights, deltas @ np.asarray(fusion.value.kernel))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(float(sum(fusion.losses)), 0.5 * 256 * 0.01, rtol=1e-5)  # 0.5 ||I - W_V||^2


def _adapter_run(base, config, seed, labels=("no", "yes"), train_layer_norms=False):
    """A classifier with `config` adapters on `base`, its trainable weights moved (as training would)."""
    rng = np.random.default_rng(seed)
    encoder = BertEncoder(**TINY, adapters=config)
    copy_base_weights(base, encoder)
    model = BertClassifier(encoder, len(labels))
    apply_strategy(model, "adapters", train_layer_norms=train_layer_norms)
    for variable in model.trainable_weights:
        variable.assign(np.asarray(variable) + rng.normal(0, 0.1, variable.shape).astype("float32"))
    return model


def test_fusion_trains_only_its_matrices_and_its_file_refers_to_its_members(tmp_path):
    keras.utils.set_random_seed(7)
    base = BertEncoder(**TINY)
    files = {}
    for index, name in enumerate(("a", "b", "c")):
        files[name] = tmp_path / f"{name}.safetensors"
        save_adaptation(_adapter_run(base, PFEIFFER, index), files[name], labels=["no", "yes"])
    encoder = BertEncoder(**TINY, adapters=FUSE)
    copy_base_weights(base, encoder)
    for name, path in files.items():  # what the job does with --fuse_adapters
        for p, array in member_arrays(name, *read_adaptation(path)).items():
            model_variables(encoder)[p].assign(array)
    model = BertClassifier(encoder, 3)
    report = apply_strategy(model, "fusion")
    hidden = TINY["hidden_size"]
    assert report.trainable == TINY["num_hidden_layers"] * (3 * hidden * hidden + 2 * hidden) + hidden * 3 + 3
    before = {p: np.asarray(v).copy() for p, v in model_variables(model).items()}
    data = random_bert_inputs(8, 7, 60)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(data, np.arange(8) % 3, epochs=2, verbose=0)
    assert_only_trainable_changed(model, before)
    path = tmp_path / "fusion.safetensors"
    metadata = save_adaptation(model, path, labels=["x", "y", "z"])
    assert set(metadata["members"]) == {"a", "b", "c"}
    saved = read_adaptation(path)[1]
    assert not any("/a/" in p or "/b/" in p for p in saved) and any("fusion_value" in p for p in saved)
    loaded = load_adaptation(base, path, members=files)
    np.testing.assert_allclose(np.asarray(loaded(data)), np.asarray(model(data)), atol=1e-6)
    with pytest.raises(ValueError, match="composes adapters it does not hold: c"):
        load_adaptation(base, path, members={"a": files["a"], "b": files["b"]})
    with pytest.raises(ValueError, match="is not the adapter 'b' it was trained with"):
        load_adaptation(base, path, members={"a": files["a"], "b": files["c"], "c": files["c"]})
    switcher = AdaptationSwitcher(base)
    switcher.add("fused", path, members=files)
    np.testing.assert_allclose(np.asarray(switcher.activate("fused")(data)), np.asarray(model(data)), atol=1e-6)


def test_stack_trains_the_top_adapter_over_a_frozen_one(tmp_path):
    keras.utils.set_random_seed(8)
    base = BertEncoder(**TINY)
    domain_file = tmp_path / "domain.safetensors"
    save_adaptation(_adapter_run(base, PFEIFFER, 1), domain_file)
    encoder = BertEncoder(**TINY, adapters=STACK)
    copy_base_weights(base, encoder)
    for p, array in member_arrays("domain", *read_adaptation(domain_file)).items():
        model_variables(encoder)[p].assign(array)
    model = BertClassifier(encoder, 2)
    apply_strategy(model, "adapters", frozen_adapters=("domain",))
    assert not any("/domain/" in v.path for v in model.trainable_weights)
    assert any("/task/" in v.path for v in model.trainable_weights)
    assert not any("layer_norm" in v.path for v in model.trainable_weights)  # compositions share the base's
    path = tmp_path / "stack.safetensors"
    metadata = save_adaptation(model, path)
    assert list(metadata["members"]) == ["domain"]
    data = random_bert_inputs(3, 6, 60)
    np.testing.assert_allclose(np.asarray(load_adaptation(base, path, members={"domain": domain_file})(data)),
                               np.asarray(model(data)), atol=1e-6)


def test_member_refusals(tmp_path):
    base = BertEncoder(**TINY)
    with_norms = tmp_path / "norms.safetensors"
    save_adaptation(_adapter_run(base, PFEIFFER, 1, train_layer_norms=True), with_norms)
    with pytest.raises(ValueError, match="trained weights of the base as well .*--train_layer_norms=false"):
        member_arrays("x", *read_adaptation(with_norms))
    lora = tmp_path / "lora.safetensors"
    save_adaptation(_adapter_run(base, AdapterConfig(kind="lora", lora_rank=2), 1), lora)
    with pytest.raises(ValueError, match="a composition holds bottleneck adapters .* this is lora"):
        member_arrays("x", *read_adaptation(lora))
    with pytest.raises(ValueError, match="sits in other slots or layers"):
        AdapterComposition("fuse", (("a", PFEIFFER), ("b", HOULSBY)))
    with pytest.raises(ValueError, match="bottleneck adapters"):
        AdapterComposition("stack", (("a", AdapterConfig(kind="ia3")),))
    with pytest.raises(ValueError, match="unique"):
        AdapterComposition("stack", (("a", PFEIFFER), ("a", PFEIFFER)))
    with pytest.raises(ValueError, match="not 'fusion'"):
        AdapterComposition("fuse", (("fusion", PFEIFFER),))
    with pytest.raises(ValueError, match="Strategy 'fusion' trains an AdapterFusion"):
        apply_strategy(BertClassifier(BertEncoder(**TINY, adapters=STACK), 2), "fusion")
    with pytest.raises(ValueError, match=r"frozen_adapters \['nope'\]"):
        apply_strategy(BertClassifier(BertEncoder(**TINY, adapters=STACK), 2), "adapters", frozen_adapters=["nope"])


# ---------------------------------------------------------------------------------------------- the script flags
def test_run_classifier_fuses_and_stacks_trained_adapters(tiny_model, tmp_path, capsys):
    import json

    from test_run_classifier import COMMON, make_glue_dir, run_job

    rng = np.random.default_rng(5)
    runs = {}
    for task in ("SST-2", "CoLA"):
        runs[task] = tmp_path / task
        assert run_job([f"--task_name={task}", f"--data_dir={make_glue_dir(task, tmp_path, rng)}",
                        f"--pretrained={tiny_model}", f"--output_dir={runs[task]}", "--do_train",
                        "--adaptation=adapters", "--adapter_kind=pfeiffer", "--adapter_size=4",
                        "--notrain_layer_norms"] + COMMON) == 0
    mrpc = make_glue_dir("MRPC", tmp_path, rng)
    fused = tmp_path / "fused"
    assert run_job(["--task_name=MRPC", f"--data_dir={mrpc}", f"--pretrained={tiny_model}", f"--output_dir={fused}",
                    "--do_train", "--do_eval", "--adaptation=fusion",
                    f"--fuse_adapters=sst2:{runs['SST-2']},cola:{runs['CoLA']}/final"] + COMMON) == 0
    card = json.loads((fused / "final" / "model_card.json").read_text())
    hidden, layers = 16, 2
    assert card["parameters"]["trainable"] == layers * (3 * hidden * hidden + 2 * hidden) + hidden * 2 + 2
    metadata = read_adaptation(fused / "final" / "adapter.safetensors")[0]
    assert set(metadata["members"]) == {"sst2", "cola"} and metadata["adapters"]["kind"] == "fuse"
    # The final model is a valid --init_checkpoint: evaluate again, same numbers.
    again = tmp_path / "again"
    assert run_job(["--task_name=MRPC", f"--data_dir={mrpc}", f"--init_checkpoint={fused}/final",
                    f"--output_dir={again}", "--do_eval", "--adaptation=fusion",
                    f"--fuse_adapters=sst2:{runs['SST-2']},cola:{runs['CoLA']}"] + COMMON) == 0
    assert (fused / "eval_results.txt").read_text().splitlines()[:2] == \
        (again / "eval_results.txt").read_text().splitlines()[:2]
    stacked = tmp_path / "stacked"
    assert run_job(["--task_name=MRPC", f"--data_dir={mrpc}", f"--pretrained={tiny_model}", f"--output_dir={stacked}",
                    "--do_train", "--adaptation=adapters", "--adapter_size=4",
                    f"--stack_adapters=domain:{runs['SST-2']}"] + COMMON) == 0
    metadata = read_adaptation(stacked / "final" / "adapter.safetensors")[0]
    assert list(metadata["members"]) == ["domain"] and [n for n, _ in metadata["adapters"]["members"]] == \
        ["domain", "task"]

    def error(argv):
        capsys.readouterr()
        assert run_job(["--task_name=MRPC", f"--data_dir={mrpc}", f"--pretrained={tiny_model}",
                        f"--output_dir={tmp_path / 'bad'}", "--do_train"] + argv + COMMON) == 2
        return capsys.readouterr().err

    with_norms = tmp_path / "norms"
    assert run_job(["--task_name=SST-2", f"--data_dir={tmp_path / 'SST-2'}", f"--pretrained={tiny_model}",
                    f"--output_dir={with_norms}", "--do_train", "--adaptation=adapters", "--adapter_size=4"] +
                   COMMON) == 0
    assert "trained weights of the base as well" in error(["--adaptation=fusion", f"--fuse_adapters=a:{with_norms}"])
    assert "--adaptation=fusion and --fuse_adapters" in error([f"--fuse_adapters=a:{runs['SST-2']}"])
    assert "--adaptation=fusion and --fuse_adapters" in error(["--adaptation=fusion"])
    assert "use --adaptation=adapters with --adapter_kind" in error(
        ["--adaptation=lora", f"--stack_adapters=a:{runs['SST-2']}"])
    assert "no adapter.safetensors there" in error(["--adaptation=fusion", f"--fuse_adapters=a:{tmp_path}/nothing"])
