"""int8 inference (layers/int8_matmul.py, TokenDense.quantize_for_inference, models/int8_inference.py,
trainer.predict(int8=True), --inference_dtype=int8 of run_classifier, run_squad and run_ner): the kernel quantisation, the guard against
TensorFlow's empty no-oneDNN kernel and the flag errors here; the tests that compute in int8 (against float32
products, the saturation-free activation range, real MiniLM weights, the job) in tests/int8_cases.py, run in one
fresh process with oneDNN on."""

import os
import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest

from tfx_transfer.layers.int8_matmul import quantized_kernel
from tfx_transfer.runtime_defaults import X86_64

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.skipif(platform.machine().lower() not in X86_64, reason="oneDNN's int8 kernels are x86-64 only")
def test_int8_cases_in_a_process_with_onednn():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", str(HERE / "int8_cases.py")], cwd=HERE.parent,
                            capture_output=True, text=True, env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1"),
                            timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "no oneDNN int8 kernels" not in result.stdout, result.stdout[-2000:]  # x86-64 with oneDNN on: they run


def test_kernel_quantisation_is_per_output_channel_and_keeps_zero_columns():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((12, 5)).astype(np.float32) * np.array([1, 10, 0.01, 1, 0], np.float32)
    values, scale, column_sums = quantized_kernel(kernel)
    assert values.dtype == np.int8 and values.shape == (12, 5) and scale.shape == column_sums.shape == (5,)
    assert np.abs(values).max() == 127 and scale[4] == 0 and not values[:, 4].any()
    assert np.all(np.abs(values * scale - kernel) <= scale / 2 + 1e-7)  # rounding error: half a step per column
    np.testing.assert_allclose(column_sums, (values * scale).sum(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="inputs, outputs"):
        quantized_kernel(kernel[None])


def test_without_onednn_the_empty_kernel_is_detected_not_used():
    # With oneDNN off TensorFlow still registers QuantizedMatMulWithBiasAndDequantize, as a kernel that returns
    # nothing: int8_kernels_available() must say no, and the job must refuse before training.
    code = ("import os; os.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'\n"
            "import tfx_transfer\n"
            "from tfx_transfer.layers.int8_matmul import int8_kernels_available\n"
            "from tfx_transfer.models.int8_inference import quantize_projections\n"
            "assert not int8_kernels_available()\n"
            "import keras\n"
            "try:\n"
            "    quantize_projections(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))\n"
            "except ValueError as e:\n"
            "    assert 'oneDNN' in str(e), e\n"
            "    print('REFUSED')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("flags, message", [
    (["--do_train"], "add --do_eval or --do_predict"),
    (["--do_eval", "--jit_compile"], "runs without XLA"),
])
def test_inference_dtype_errors_come_before_training(flags, message, tiny_model, tmp_path, capsys):
    from test_run_classifier import COMMON, make_glue_dir, run_job

    data_dir = make_glue_dir("SST-2", tmp_path, np.random.default_rng(0))
    code = run_job(["--task_name=SST-2", f"--data_dir={data_dir}", f"--pretrained={tiny_model}",
                    f"--output_dir={tmp_path / 'out'}", "--inference_dtype=int8", *flags] + COMMON)
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out" / "final").exists()


def test_inference_dtype_errors_of_run_squad_and_run_ner(tiny_model, tmp_path, capsys):
    import test_run_ner
    import test_squad

    train = test_squad.write(tmp_path, test_squad.squad_json(test_squad.THREE_QUESTIONS), "train.json")
    assert test_squad.run_job([f"--train_file={train}", f"--output_dir={tmp_path / 'squad'}", "--do_train",
                               f"--pretrained={tiny_model}", "--max_seq_length=64", "--max_query_length=16",
                               "--doc_stride=32", "--inference_dtype=int8"]) == 2
    assert "add --do_predict." in capsys.readouterr().err
    conll = tmp_path / "train.txt"
    test_run_ner._conll(conll, 8, 0)
    assert test_run_ner.run_job([f"--pretrained={tiny_model}", f"--train_file={conll}", f"--dev_file={conll}",
                                 f"--output_dir={tmp_path / 'ner'}", "--do_train", "--do_eval", "--probe_layers=all",
                                 "--adaptation=feature_extraction", "--inference_dtype=int8",
                                 *test_run_ner.COMMON]) == 2
    assert "does not apply to --probe_layers" in capsys.readouterr().err
    assert not (tmp_path / "squad" / "final").exists() and not (tmp_path / "ner" / "final").exists()

