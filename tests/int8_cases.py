"""The int8 tests that compute (tests/test_int8_inference.py runs this file in a fresh process with oneDNN on, as
importing tfx_transfer first gives users: the suite's own process imports TensorFlow through Keras first, and on
CPUs where TensorFlow leaves oneDNN off by default there are no int8 kernels in it)."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tfx_transfer.layers.int8_matmul import (ACTIVATION_LEVELS, Int8Kernel, int8_kernels_available,  # noqa: E402
                                             int8_matmul, quantized_kernel)
from tfx_transfer.layers.token_dense import TokenDense, int8_projections  # noqa: E402

pytestmark = pytest.mark.skipif(not int8_kernels_available(), reason="no oneDNN int8 kernels in this process")


def _int8(x, kernel):
    return tf.function(lambda x: int8_matmul(x, kernel), autograph=False)(tf.constant(x)).numpy()


def test_int8_matmul_matches_the_float_product_within_its_quantisation_error():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 64)).astype(np.float32) + np.linspace(-3, 3, 40, dtype=np.float32)[:, None]
    x[:, 7] *= 20  # an outlier feature, as BERT's hidden states have
    kernel = rng.standard_normal((64, 24)).astype(np.float32) * 0.05
    got, exact = _int8(x, Int8Kernel(kernel)), x @ kernel
    values, scale, _ = quantized_kernel(kernel)
    step = (x.max(1) - x.min(1)) / ACTIVATION_LEVELS  # [N]: each row's own activation step
    bound = step[:, None] / 2 * np.abs(values * scale).sum(0) + np.abs(x) @ (scale / 2 * np.ones((64, 1)))
    assert np.all(np.abs(got - exact) <= bound + 1e-4)
    assert np.abs(got - exact).max() / np.abs(exact).max() < 0.05  # 2.8% here, with the outlier feature


def test_the_top_of_the_activation_range_times_full_weights_does_not_saturate():
    # oneDNN's AVX2 u8 x s8 kernel sums product pairs in int16: 255 * 127 * 2 would saturate (the result comes back
    # halved), 127 * 127 * 2 does not. Rows of [0, 1, 1, ...] quantise to 127s, a constant kernel to 127s.
    x = np.ones((4, 256), np.float32)
    x[:, 0] = 0
    got = _int8(x, Int8Kernel(np.full((256, 3), 0.5, np.float32)))
    np.testing.assert_allclose(got, np.full((4, 3), 255 * 0.5), rtol=1e-6)


def test_token_dense_is_int8_only_under_the_context_and_requantises_in_place():
    layer = TokenDense(8, activation="gelu")
    layer.build((None, None, 16))
    x = tf.constant(np.random.default_rng(2).standard_normal((2, 5, 16)).astype(np.float32))
    float_out = layer(x).numpy()
    layer.quantize_for_inference()
    np.testing.assert_array_equal(layer(x).numpy(), float_out)  # outside the context: float32, unchanged
    with int8_projections():
        forward = tf.function(lambda x: layer(x, training=False), autograph=False)
        first = forward(x).numpy()
        with pytest.raises(ValueError, match="no gradient"):
            layer(x, training=True)
    assert not np.array_equal(first, float_out)
    np.testing.assert_allclose(first, float_out, atol=0.05)
    layer.kernel.assign(layer.kernel * 2)  # the weights change (more training) ...
    layer.quantize_for_inference()  # ... re-quantised into the same variables: the trace above sees the new values
    np.testing.assert_allclose(forward(x).numpy(), layer(x).numpy(), atol=0.1)


def test_predict_in_int8_leaves_the_model_float32(tiny_model):
    from tfx_transfer import BertEncoder
    from tfx_transfer.data.pipeline import EncodedSplit
    from tfx_transfer.jobs import trainer
    from tfx_transfer.models import BertClassifier
    from tfx_transfer.models.int8_inference import quantize_projections

    model = BertClassifier(BertEncoder.from_pretrained(tiny_model), 3)
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 17, 20)
    word_ids = np.where(np.arange(16) < lengths[:, None], rng.integers(5, 20, (20, 16)), 0).astype(np.int32)
    split = EncodedSplit(word_ids, np.zeros_like(word_ids), lengths.astype(np.int32), None,
                         [str(i) for i in range(20)])
    before = trainer.predict(model, split, batch_size=8, max_seq_length=16)
    int8 = trainer.predict(model, split, batch_size=8, max_seq_length=16, int8=True)
    after = trainer.predict(model, split, batch_size=8, max_seq_length=16)
    np.testing.assert_array_equal(after, before)  # the float path (and its cached trace) is untouched
    assert not np.array_equal(int8, before) and np.abs(int8 - before).max() < 0.05
    assert quantize_projections(model) == 2 * 6  # query, key, value, attention output, intermediate, output
    with pytest.raises(ValueError, match="without XLA"):
        trainer.forward_function(model, jit_compile=True, int8=True)
    with pytest.raises(ValueError, match="no token projections"):
        quantize_projections(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_real_minilm_sentence_vectors_survive_int8(minilm_dir):
    from tfx_transfer import BertEncoder
    from tfx_transfer.data.examples import InputExample
    from tfx_transfer.data.pipeline import encode_examples
    from tfx_transfer.models.int8_inference import quantize_projections
    from tfx_transfer.text.tokenizer import BertTokenizer

    sentences = ["it 's a charming and often affecting journey .", "unflinchingly bleak and desperate",
                 "the acting , costumes , music , cinematography and sound are all astounding given the production "
                 "'s austere locales .", "a gorgeous , witty , seductive movie .", "it 's slow -- very , very slow ."]
    split = encode_examples([InputExample(str(i), s) for i, s in enumerate(sentences)],
                            BertTokenizer.from_pretrained(minilm_dir), 64)
    inputs = {"input_word_ids": split.word_ids, "input_mask": (split.word_ids > 0).astype(np.int32),
              "input_type_ids": split.type_ids}
    encoder = BertEncoder.from_pretrained(minilm_dir)
    forward = tf.function(lambda x: encoder(x, training=False)["sequence_output"], autograph=False)
    exact = forward(inputs).numpy()
    assert quantize_projections(encoder) == 36
    with int8_projections():
        forward8 = tf.function(lambda x: encoder(x, training=False)["sequence_output"], autograph=False)
        int8 = forward8(inputs).numpy()

    def mean_pooled(states):  # all-MiniLM-L6-v2's sentence vector
        mask = inputs["input_mask"][..., None]
        vectors = (states * mask).sum(1) / mask.sum(1)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    cosine = (mean_pooled(exact) * mean_pooled(int8)).sum(1)
    assert cosine.min() > 0.99, cosine  # 0.993-0.997 measured


def test_run_classifier_predicts_in_int8_and_saves_the_float_model(tiny_model, tmp_path, absl_log):
    from test_run_classifier import COMMON, make_glue_dir, run_job

    data_dir = make_glue_dir("SST-2", tmp_path, np.random.default_rng(0))
    out = tmp_path / "out"
    assert run_job(["--task_name=SST-2", f"--data_dir={data_dir}", f"--pretrained={tiny_model}", f"--output_dir={out}",
                    "--do_train", "--do_eval", "--do_predict", "--inference_dtype=int8", "--eval_every_epoch",
                    "--verbosity=0"]
                   + COMMON) == 0  # evaluation during training: quantised before final/ is saved
    assert "int8 inference: 12 token projections quantised." in absl_log.text
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert 0 <= float(results["eval_accuracy"]) <= 1
    assert len((out / "test_results.tsv").read_text().splitlines()) == 5
    saved = keras.models.load_model(out / "final" / "model.keras")  # saved after int8 evaluations during training
    assert {str(w.dtype) for w in saved.weights} == {"float32"}  # the trained float model, nothing of int8 in it


def test_run_squad_predicts_in_int8_close_to_float32(minilm_dir, tmp_path, absl_log):
    """Real MiniLM: evaluation during training and --do_predict in int8; the same final/ predicted again in float32
    gives the candidates' start and end logits within the int8 error, and not bitwise the same (int8 ran)."""
    import json

    from test_squad import THREE_QUESTIONS, run_job, squad_json, write

    train = write(tmp_path, squad_json(THREE_QUESTIONS), "train.json")
    common = [f"--predict_file={train}", "--do_predict", "--eval", "--max_seq_length=64", "--max_query_length=16",
              "--doc_stride=32", "--predict_batch_size=2"]
    out = tmp_path / "out"
    assert run_job([f"--train_file={train}", f"--output_dir={out}", "--do_train", "--train_batch_size=2",
                    "--num_train_epochs=1", "--learning_rate=1e-4", "--eval_every_steps=2", "--inference_dtype=int8",
                    "--verbosity=0", *common]) == 0
    assert "int8 inference: 36 token projections quantised." in absl_log.text  # 6 layers x 6
    again = tmp_path / "again"
    assert run_job([f"--init_checkpoint={out / 'final'}", f"--output_dir={again}", *common]) == 0
    int8, exact = (json.loads((d / "nbest_predictions.json").read_text()) for d in (out, again))
    assert set(int8) == set(exact) == {"q1", "q2", "q3"}
    differences = []
    for q in int8:
        for key in ("start_logit", "end_logit"):
            exact_logits = {c["text"]: c[key] for c in exact[q]}
            differences += [abs(c[key] - exact_logits[c["text"]]) / (1 + abs(c[key])) for c in int8[q]
                            if c["text"] in exact_logits]
    assert len(differences) >= 20
    assert 0 < max(differences) < 0.05, max(differences)


def test_run_ner_evaluates_and_predicts_in_int8(tiny_model, tmp_path, absl_log):
    from test_run_ner import COMMON, _conll, _results, run_job

    train, dev, test = tmp_path / "train.txt", tmp_path / "dev.txt", tmp_path / "test.txt"
    _conll(train, 160, 0)
    _conll(dev, 40, 1, docstart=False)
    _conll(test, 5, 2)
    out = tmp_path / "out"
    assert run_job([f"--pretrained={tiny_model}", f"--train_file={train}", f"--dev_file={dev}", f"--test_file={test}",
                    f"--output_dir={out}", "--do_train", "--do_eval", "--do_predict", "--num_train_epochs=6",
                    "--inference_dtype=int8", "--verbosity=0", *COMMON]) == 0
    assert "int8 inference: 12 token projections quantised." in absl_log.text
    int8 = _results(out)
    assert len([line for line in (out / "test_predictions.txt").read_text().splitlines() if line.strip()]) > 0
    again = tmp_path / "again"
    assert run_job([f"--init_checkpoint={out / 'final'}", f"--dev_file={dev}", f"--output_dir={again}", "--do_eval",
                    *COMMON]) == 0
    exact = _results(again)
    assert exact["eval_accuracy"] > 0.9  # the float32 model learnt the tags
    assert abs(int8["eval_accuracy"] - exact["eval_accuracy"]) <= 0.02, (int8, exact)
    assert abs(int8["eval_loss"] - exact["eval_loss"]) <= 0.05 * exact["eval_loss"] + 0.01, (int8, exact)


def test_model_garden_hub_module_predicts_in_int8(tmp_path, absl_log):
    """A TF Hub module made by Model Garden's own exporter (tests/fixtures/model_garden/hub_encoder): with int8 the
    job unwraps it (BertEncoder.from_hub) and quantises its projections; its probabilities stay within the int8
    error of the same final/ predicted in float32."""
    from fixture_utils import path
    from test_interop_scripts import SMALL, classifier, run

    out = tmp_path / "int8"
    assert run(classifier, ["--task_name=demo", "--do_train", "--do_eval", "--do_predict",
                            "--hub_module_handle=" + path("model_garden/hub_encoder"), "--adaptation=full",
                            f"--output_dir={out}", "--max_train_examples=16", "--train_batch_size=8",
                            "--num_train_epochs=1", "--inference_dtype=int8", *SMALL]) == 0
    assert "token projections quantised." in absl_log.text
    again = tmp_path / "float32"
    assert run(classifier, ["--task_name=demo", "--do_predict", f"--init_checkpoint={out / 'final'}",
                            f"--output_dir={again}", *SMALL]) == 0
    int8, exact = (np.loadtxt(d / "test_results.tsv", delimiter="\t") for d in (out, again))
    assert int8.shape == exact.shape and len(int8) > 0
    assert 0 < np.abs(int8 - exact).max() < 0.02, np.abs(int8 - exact).max()
