"""Several tasks on one base in one model: BatchSplit and Parallel (adaptation/composition.py) and the multi-task TF
Serving export (export/multitask_module.py)."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, BertPreprocessor, BertTokenizer, apply_strategy
from tfx_transfer import load_adaptation, save_adaptation
from tfx_transfer.adaptation.composition import ABSENT_CLASS_LOGIT, BatchSplit, Parallel, TaskAdaptation, read_tasks
from tfx_transfer.export import export_multitask_for_serving

from conftest import TINY, TINY_ENCODER
from layer_checks import copy_base_weights, random_bert_inputs
from session_loading import functions_kept_whole
from test_export import _fresh_process

# (name, head width, adaptation): kinds that plug in differently (slots, projections, attention keys) and heads of
# different widths, a regression among them.
TASKS = (("houlsby", 2, AdapterConfig(size=8, init_stddev=0.3)),
         ("lora", 3, AdapterConfig(kind="lora", lora_rank=2)),
         ("ia3", 1, AdapterConfig(kind="ia3")),
         ("prefix", 2, AdapterConfig(kind="prefix", prefix_length=3)))


def _task_models(base, tasks=TASKS, seed=0):
    """Task models adapted from `base`, with every weight they would train moved away from its initial value."""
    rng = np.random.default_rng(seed)
    models = {}
    for name, width, adapters in tasks:
        encoder = BertEncoder.from_bert_config(base.bert_config, adapters=adapters)
        copy_base_weights(base, encoder)
        model = BertClassifier(encoder, width)
        apply_strategy(model, "adapters")
        for variable in model.trainable_weights:
            variable.assign(np.asarray(variable) + rng.normal(0, 0.2, variable.shape).astype("float32"))
        models[name] = model
    return models


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory):
    """(base encoder, {task: adapted model}, {task: adaptation file})."""
    keras.utils.set_random_seed(5)
    base = BertEncoder(**TINY)
    models = _task_models(base)
    directory = tmp_path_factory.mktemp("tasks")
    files = {}
    for name, model in models.items():
        files[name] = directory / f"{name}.safetensors"
        save_adaptation(model, files[name])
    return base, models, files


def test_batch_split_rows_equal_their_task_models_alone(tiny_tasks):
    base, models, files = tiny_tasks
    model = BatchSplit(base, files)
    data = random_bert_inputs(7, 9, 60)
    task_ids = np.array([0, 1, 2, 3, 1, 0, 3], np.int32)
    logits = np.asarray(model({**data, "task_ids": task_ids}))
    assert logits.shape == (7, 3) and model.task_names == list(models)
    for row, index in enumerate(task_ids):
        name = model.task_names[index]
        alone = np.asarray(models[name]({k: v[row:row + 1] for k, v in data.items()}))[0]
        np.testing.assert_allclose(logits[row, :len(alone)], alone, atol=1e-5, err_msg=f"row {row} ({name})")
        assert np.all(logits[row, len(alone):] == ABSENT_CLASS_LOGIT)
    probabilities = tf.nn.softmax(logits).numpy()
    assert np.all(probabilities[task_ids == 0, 2] == 0.0)  # a 2-class task's third column is absent
    # A batch of one task's rows; and one with no rows of some tasks (they are skipped).
    only = np.asarray(model({**data, "task_ids": np.full(7, 1, np.int32)}))
    np.testing.assert_allclose(only, np.asarray(models["lora"](data)), atol=1e-5)


def test_parallel_equals_running_the_tasks_separately(tiny_tasks):
    base, models, files = tiny_tasks
    data = random_bert_inputs(4, 8, 60)
    outputs = Parallel(base, models)(data)  # from the models in memory this time
    assert list(outputs) == list(models)
    for name, model in models.items():
        np.testing.assert_allclose(np.asarray(outputs[name]), np.asarray(model(data)), atol=1e-6, err_msg=name)


def test_one_copy_of_the_base_saved_and_reloaded(tiny_tasks, tmp_path):
    base, models, files = tiny_tasks
    model = BatchSplit(base, files)
    own = sum(len(read_tasks(base, {n: f})[0].arrays) for n, f in files.items())
    assert len(model.weights) == len(base.weights) + own  # the templates hold no saved weight
    assert not any(v.trainable for v in model.encoder.weights)
    path = tmp_path / "composition.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    data = {**random_bert_inputs(5, 6, 60), "task_ids": np.array([3, 2, 1, 0, 0], np.int32)}
    np.testing.assert_array_equal(np.asarray(reloaded(data)), np.asarray(model(data)))
    assert type(reloaded) is BatchSplit and reloaded.task_names == model.task_names


def test_batch_split_trains_each_task_on_its_own_rows(tiny_tasks, tmp_path):
    base, models, files = tiny_tasks
    classifiers = {name: files[name] for name in ("houlsby", "lora")}
    model = BatchSplit(base, classifiers)
    data = random_bert_inputs(6, 7, 60)
    task_ids = np.array([0, 1, 0, 0, 1, 0], np.int32)
    labels = np.array([1, 2, 0, 1, 0, 1])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # The gradient reaching a task's weights is its own model's on its rows (x its share of the batch mean).
    with tf.GradientTape() as tape:
        value = loss(labels, model({**data, "task_ids": task_ids}, training=False))
    gradients = dict(zip([v.path for v in model.trainable_weights],
                         tape.gradient(value, model.trainable_weights)))
    for index, name in enumerate(classifiers):
        rows = task_ids == index
        alone = models[name]
        with tf.GradientTape() as tape:
            own = loss(labels[rows], alone({k: v[rows] for k, v in data.items()}, training=False)) * rows.mean()
        expected = dict(zip([v.path for v in alone.trainable_weights], tape.gradient(own, alone.trainable_weights)))
        for path, variable in model.task_weights[index].values.items():
            np.testing.assert_allclose(np.asarray(gradients[variable.path]), np.asarray(expected[path]), atol=1e-5,
                                       err_msg=f"{name}: {path}")
    # fit: the base stays bit-identical, the tasks train; a task written back loads as any adaptation file does.
    before = {v.path: np.asarray(v).copy() for v in model.encoder.weights}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit({**data, "task_ids": task_ids}, labels, epochs=2, batch_size=6, verbose=0)
    assert all(np.array_equal(before[v.path], np.asarray(v)) for v in model.encoder.weights)
    model.save_task("lora", tmp_path / "lora.safetensors")
    loaded = load_adaptation(base, tmp_path / "lora.safetensors")
    np.testing.assert_allclose(np.asarray(loaded(data)), np.asarray(model.task_call(1, data)), atol=1e-6)
    assert not np.allclose(np.asarray(loaded(data)), np.asarray(models["lora"](data)), atol=1e-4)  # it trained


def test_dropout_still_draws_new_masks_through_a_template(tiny_tasks):
    base, models, files = tiny_tasks
    model = Parallel(base, {"houlsby": files["houlsby"]})
    data = random_bert_inputs(3, 6, 60)
    first, second = (np.asarray(model(data, training=True)["houlsby"]) for _ in range(2))
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(np.asarray(model(data)["houlsby"]), np.asarray(model(data)["houlsby"]))


def test_composition_refusals(tiny_tasks, tmp_path):
    base, models, files = tiny_tasks
    other = BertEncoder(**TINY)  # same architecture, other weights
    with pytest.raises(ValueError, match="trained on a different base model"):
        BatchSplit(other, files)
    with pytest.raises(ValueError, match="different base architecture"):
        BatchSplit(BertEncoder(**{**TINY, "num_hidden_layers": 1}), files)
    encoder_only = BertEncoder(**TINY, adapters=AdapterConfig(size=4))
    copy_base_weights(base, encoder_only)
    apply_strategy(encoder_only, "adapters")
    with pytest.raises(ValueError, match="has no task head"):
        Parallel(base, {"domain": encoder_only})
    with pytest.raises(ValueError, match="repeated"):
        Parallel(base, [("a", files["lora"]), ("a", files["ia3"])])
    with pytest.raises(ValueError, match="without '/'"):
        Parallel(base, {"a/b": files["lora"]})
    with pytest.raises(ValueError, match="at least one task"):
        Parallel(base, {})
    model = BatchSplit(base, {"lora": files["lora"]})
    with pytest.raises(tf.errors.InvalidArgumentError):
        model({**random_bert_inputs(2, 5, 60), "task_ids": np.array([0, 1], np.int32)})
    with pytest.raises(KeyError, match="Unknown task 'nope'"):
        model.save_task("nope", tmp_path / "x")
    task = read_tasks(base, {"lora": files["lora"]})[0]
    broken = TaskAdaptation("lora", task.metadata, {**task.arrays, "classifier/extra": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="holds weights its model does not have"):
        BatchSplit(base, [broken])


# ---------------------------------------------------------------------------------------------- one SavedModel
@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


def test_multitask_export_routes_each_example_to_its_task_in_a_fresh_process(tokenizer, tmp_path):
    keras.utils.set_random_seed(9)
    base = BertEncoder(vocab_size=tokenizer.vocab_size, **TINY_ENCODER)
    models = _task_models(base, TASKS[:3], seed=1)
    labels = {"houlsby": ["neg", "pos"], "lora": ["a", "b", "c"]}
    files = {}
    for name, model in models.items():
        files[name] = tmp_path / f"{name}.safetensors"
        save_adaptation(model, files[name], labels=labels.get(name))
    composition = BatchSplit(base, files)
    pairs, lengths = {"houlsby": False, "lora": True, "ia3": True}, {"houlsby": 16, "lora": 24, "ia3": 32}
    path = export_multitask_for_serving(composition, tmp_path / "models", tokenizer, pairs=pairs,
                                        max_seq_length=lengths)
    assert os.path.isfile(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    variables = [name for name, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))]
    assert sum("word_embeddings" in name for name in variables) == 1  # one base
    assert len(functions_kept_whole(path)) == 6  # each task's packing and graph once, called by every signature

    tasks = ["lora", "houlsby", "ia3", "houlsby", "lora", "houlsby"]
    texts = ["a good movie", "the plot was dull " * 20, "a cat", "", "fun fun", "not bad at all"]
    texts_b = ["a great film", "", "a kitten sat", "ignored", "dull", ""]
    served = _fresh_process("""
import tensorflow as tf, tensorflow_text
m = tf.saved_model.load(DATA["path"])
def plain(r):
    return {k: v.numpy().tolist() if v.dtype != tf.string else [x.decode() for x in v.numpy()] for k, v in r.items()}
out = {"signatures": sorted(m.signatures)}
out["routed"] = plain(m.signatures["serving_default"](task=tf.constant(DATA["tasks"]), text=tf.constant(DATA["texts"]),
                                                      text_b=tf.constant(DATA["texts_b"])))
out["empty"] = plain(m.signatures["serving_default"](task=tf.constant([], tf.string), text=tf.constant([], tf.string),
                                                     text_b=tf.constant([], tf.string)))
out["lora"] = plain(m.signatures["lora"](text=tf.constant(DATA["texts"][:2]), text_b=tf.constant(DATA["texts_b"][:2])))
out["one_task"] = plain(m.signatures["serving_default"](task=tf.constant(["lora", "lora"]),
                                                        text=tf.constant(DATA["texts"][:2]),
                                                        text_b=tf.constant(DATA["texts_b"][:2])))
out["one_regression"] = plain(m.signatures["serving_default"](task=tf.constant(["ia3"]),
                                                              text=tf.constant(DATA["texts"][2:3]),
                                                              text_b=tf.constant(DATA["texts_b"][2:3])))
out["houlsby"] = plain(m.signatures["houlsby"](text=tf.constant(DATA["texts"][:2])))
try:
    m.signatures["serving_default"](task=tf.constant(["cola"]), text=tf.constant(["x"]), text_b=tf.constant([""]))
except tf.errors.InvalidArgumentError as e:
    out["unknown"] = str(e)
from tensorflow_serving.apis import prediction_log_pb2  # replay the warmup requests as TF Serving does
out["warmup"] = []
for record in tf.data.TFRecordDataset(DATA["path"] + "/assets.extra/tf_serving_warmup_requests"):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    out["warmup"].append(plain(m.signatures[request.model_spec.signature_name](**inputs))["task"])
session = session_outputs(DATA["path"], "serving_default", {"task": DATA["tasks"], "text": DATA["texts"],
                                                             "text_b": DATA["texts_b"]})
out["session"] = {"score": session["score"].tolist(), "label": [x.decode() for x in session["label"]]}
print(json.dumps(out))
""", {"path": path, "tasks": tasks, "texts": texts, "texts_b": texts_b}, tmp_path)
    assert served["signatures"] == ["from_ids", "houlsby", "ia3", "lora", "serving_default"]
    routed = served["routed"]
    assert routed["task"] == tasks and len(served["empty"]["label"]) == 0
    for row, name in enumerate(tasks):
        pre = BertPreprocessor(tokenizer, seq_length=lengths[name], pad_to_max_length=False)
        inputs = pre([texts[row]], [texts_b[row]] if pairs[name] else None)
        logits = np.asarray(models[name](inputs))[0]
        if name == "ia3":  # regression
            assert routed["label"][row] == "" and routed["label_id"][row] == -1
            np.testing.assert_allclose(routed["score"][row], logits[0], atol=1e-5)
            assert routed["probabilities"][row] == [0.0, 0.0, 0.0]
            continue
        probabilities = tf.nn.softmax(logits).numpy()
        np.testing.assert_allclose(routed["probabilities"][row][:len(probabilities)], probabilities, atol=1e-5)
        assert routed["probabilities"][row][len(probabilities):] == [0.0] * (3 - len(probabilities))
        assert routed["label"][row] == labels[name][int(probabilities.argmax())]
        np.testing.assert_allclose(routed["score"][row], probabilities.max(), atol=1e-5)
    np.testing.assert_allclose(served["lora"]["probabilities"][0], routed["probabilities"][0], atol=1e-6)
    # A batch of one task takes the direct path: the same outputs.
    np.testing.assert_allclose(served["one_task"]["probabilities"], served["lora"]["probabilities"], atol=1e-6)
    assert served["one_task"]["label"] == served["lora"]["label"] and served["one_task"]["task"] == ["lora", "lora"]
    np.testing.assert_allclose(served["one_regression"]["score"], routed["score"][2:3], atol=1e-6)
    np.testing.assert_allclose(served["houlsby"]["probabilities"][1], routed["probabilities"][1][:2], atol=1e-6)
    assert "unknown task name; the tasks of this model are houlsby, lora, ia3" in served["unknown"]
    assert served["warmup"] == [["houlsby", "lora", "ia3"]]  # one warmup request reaches every task
    assert served["session"]["label"] == routed["label"]  # loaded as TF Serving loads it
    np.testing.assert_allclose(served["session"]["score"], routed["score"], atol=1e-5)


def test_multitask_export_refuses_task_names_no_signature_can_have(tokenizer, tmp_path):
    base = BertEncoder(vocab_size=tokenizer.vocab_size, **TINY_ENCODER)
    model = _task_models(base, TASKS[:1])["houlsby"]
    with pytest.raises(ValueError, match="cannot name a serving signature"):
        export_multitask_for_serving(BatchSplit(base, {"from_ids": model}), tmp_path / "m", tokenizer)
    with pytest.raises(ValueError, match="cannot name a serving signature"):
        export_multitask_for_serving(BatchSplit(base, {"my task": model}), tmp_path / "m", tokenizer)
    with pytest.raises(KeyError, match="Unknown task 'sst2'"):
        export_multitask_for_serving(BatchSplit(base, {"a": model}), tmp_path / "m", tokenizer, pairs={"sst2": True})
    assert not os.path.exists(tmp_path / "m" / "1")


# ---------------------------------------------------------------------------------------------- the script flag
def test_run_classifier_exports_finished_runs_as_one_model(tiny_model, tmp_path, capsys):
    import json

    from test_run_classifier import COMMON, make_glue_dir, run_job

    from tfx_transfer.checkpoints.writers import save_hf_checkpoint

    rng = np.random.default_rng(3)
    runs = {}
    for task, adaptation in (("SST-2", ["--adaptation=adapters", "--adapter_size=4"]),
                             ("MRPC", ["--adaptation=lora", "--lora_rank=2"]),
                             ("CoLA", ["--adaptation=full"])):
        data_dir = make_glue_dir(task, tmp_path, rng)
        runs[task] = tmp_path / f"run_{task}"
        assert run_job([f"--task_name={task}", f"--data_dir={data_dir}", f"--pretrained={tiny_model}",
                        f"--output_dir={runs[task]}", "--do_train"] + adaptation + COMMON) == 0
    export = tmp_path / "export"
    adapter = runs["MRPC"] / "final" / "adapter.safetensors"
    assert run_job([f"--export_tasks=sst2:{runs['SST-2']},mrpc:{adapter}", f"--export_dir={export}",
                    f"--pretrained={tiny_model}"]) == 0
    loaded = tf.saved_model.load(str(export / "1"))
    routed = loaded.signatures["serving_default"]
    assert set(routed.structured_input_signature[1]) == {"task", "text", "text_b"}  # MRPC reads pairs
    texts, texts_b = ["good movie", "a fun plot", "dull"], ["", "the plot", "x"]
    out = routed(task=tf.constant(["sst2", "mrpc", "sst2"]), text=tf.constant(texts), text_b=tf.constant(texts_b))
    tokenizer = BertTokenizer.from_pretrained(tiny_model)
    for row, (run, pairs) in enumerate(((runs["SST-2"], False), (runs["MRPC"], True), (runs["SST-2"], False))):
        model = keras.models.load_model(run / "final" / "model.keras")
        inputs = BertPreprocessor(tokenizer, seq_length=32, pad_to_max_length=False)(
            [texts[row]], [texts_b[row]] if pairs else None)
        expected = tf.nn.softmax(model(inputs)).numpy()[0]
        np.testing.assert_allclose(out["probabilities"].numpy()[row], expected, atol=1e-5)
    assert [x.decode() for x in out["label"].numpy()][0] in ("0", "1")
    card = json.loads((export / "1" / "model_card.json").read_text())
    assert [t["name"] for t in card["task"]["tasks"]] == ["sst2", "mrpc"]
    assert [t["adapter_kind"] for t in card["task"]["tasks"]] == ["houlsby", "lora"]
    assert "## Tasks" in (export / "1" / "README.md").read_text()

    def error(argv):
        capsys.readouterr()
        assert run_job(argv) == 2
        return capsys.readouterr().err

    assert "holds a whole model (trained with --adaptation=full)" in error(
        [f"--export_tasks=cola:{runs['CoLA']}", f"--export_dir={export}", f"--pretrained={tiny_model}"])
    assert "is not NAME:PATH" in error([f"--export_tasks={runs['SST-2']}", f"--export_dir={export}"])
    assert "needs --export_dir" in error([f"--export_tasks=sst2:{runs['SST-2']}"])
    assert "does not combine with --do_train" in error(
        [f"--export_tasks=sst2:{runs['SST-2']}", f"--export_dir={export}", "--do_train"])
    other = tmp_path / "other_base"  # the same architecture and vocabulary, other weights
    encoder = BertEncoder.from_pretrained(tiny_model)
    for variable in encoder.weights:
        variable.assign(np.asarray(variable) * 1.01)
    save_hf_checkpoint(encoder, other, vocab_file=tokenizer.vocab_file, do_lower_case=True)
    message = error([f"--export_tasks=sst2:{runs['SST-2']}", f"--export_dir={export}", f"--pretrained={other}"])
    assert "was trained on a different base model" in message and "The runs record their base models" in message


# ---------------------------------------------------------------------------------------------- Average
def test_average_of_adaptations_is_the_weighted_mean_of_their_arrays(tiny_tasks, tmp_path):
    from tfx_transfer.adaptation.composition import average_adaptations
    from tfx_transfer.adaptation.files import read_adaptation, write_adaptation

    base, _, _ = tiny_tasks
    seeds = [_task_models(base, TASKS[:1], seed=s)["houlsby"] for s in (1, 2)]
    files = []
    for i, model in enumerate(seeds):
        files.append(tmp_path / f"seed{i}.safetensors")
        save_adaptation(model, files[-1], labels=["neg", "pos"])
    metadata, arrays = average_adaptations(files, weights=[3, 1])
    first, second = (read_adaptation(f)[1] for f in files)
    assert set(arrays) == set(first)
    for path in arrays:
        np.testing.assert_allclose(arrays[path], 0.75 * first[path] + 0.25 * second[path], rtol=1e-6, atol=1e-7)
    assert metadata["extra"]["averaged"] == {"of": 2, "weights": [0.75, 0.25]} and metadata["labels"] == ["neg", "pos"]
    write_adaptation(tmp_path / "soup.safetensors", metadata, arrays)
    soup = load_adaptation(base, tmp_path / "soup.safetensors")  # a file like any other
    assert soup.num_classes == 2
    # Without the head: an encoder-only adaptation (heads of other tasks differ).
    metadata, arrays = average_adaptations(files, include_head=False)
    assert metadata["head"] is None and not any(p.startswith("classifier/") for p in arrays)
    other = _task_models(base, (("x", 3, AdapterConfig(size=8, init_stddev=0.3)),), seed=3)["x"]
    with pytest.raises(ValueError, match="another head or other labels"):
        average_adaptations([files[0], (read_tasks(base, {"x": other})[0].metadata,
                                        read_tasks(base, {"x": other})[0].arrays)])
    lora = _task_models(base, TASKS[1:2])["lora"]
    with pytest.raises(ValueError, match="another adapter architecture"):
        average_adaptations([files[0], tuple(dataclasses.astuple(read_tasks(base, {"l": lora})[0])[1:])])
    with pytest.raises(ValueError, match="at least two"):
        average_adaptations(files[:1])
    with pytest.raises(ValueError, match="3 weights for 2"):
        average_adaptations(files, weights=[1, 2, 3])


def test_batch_split_serves_every_later_kind_too(tmp_path):
    """Compacter, prompt tuning and UniPELT (a gated union) as tasks of one BatchSplit: rows equal their models."""
    from tfx_transfer.layers.adapter_config import AdapterUnion

    keras.utils.set_random_seed(11)
    base = BertEncoder(**TINY)
    tasks = (("compacter", 2, AdapterConfig("compacter", size=8)),
             ("prompt", 3, AdapterConfig("prompt", prompt_length=2)),
             ("unipelt", 2, AdapterUnion.unipelt(16, prefix_length=2, adapter_size=4)))
    models = _task_models(base, tasks, seed=4)
    model = BatchSplit(base, models)
    data = random_bert_inputs(5, 6, 60)
    task_ids = np.array([2, 0, 1, 2, 1], np.int32)
    logits = np.asarray(model({**data, "task_ids": task_ids}))
    for row, index in enumerate(task_ids):
        alone = np.asarray(models[model.task_names[index]]({k: v[row:row + 1] for k, v in data.items()}))[0]
        np.testing.assert_allclose(logits[row, :len(alone)], alone, atol=1e-5)
