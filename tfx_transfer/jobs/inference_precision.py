"""--inference_dtype: the precision of a job's predictions (run_classifier.py, run_squad.py, run_ner.py: evaluation
during training, --do_eval, --do_predict, --write_train_probabilities): float32, or int8 token projections
(models/int8_inference.py) from the trained model's current weights. Checked before anything trains."""

from __future__ import annotations

from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.models.int8_inference import UNAVAILABLE, int8_kernels_available


def predicts_in_int8(options) -> bool:
    """--inference_dtype=int8. int8 rewrites the encoder's projections, so a Hub module is then unwrapped
    (BertEncoder.from_hub: same outputs)."""
    return options.inference_dtype == "int8"


def validate_inference_dtype(options):
    """Raises FlagError when --inference_dtype=int8 cannot run: nothing to predict, layer probes (which predict from
    frozen features in float32), XLA asked for, or no oneDNN int8 kernels in this process."""
    if not predicts_in_int8(options):
        return
    if not (getattr(options, "do_eval", False) or options.do_predict
            or getattr(options, "write_train_probabilities", False)):
        predicting = "--do_eval or --do_predict" if hasattr(options, "do_eval") else "--do_predict"
        raise FlagError(f"--inference_dtype=int8 is the precision of the job's predictions: add {predicting}.")
    if getattr(options, "probe_layers", None):
        raise FlagError("--inference_dtype=int8 does not apply to --probe_layers (the probes read float32 features): "
                        "drop one of the two.")
    if options.training.jit_compile:
        raise FlagError("--inference_dtype=int8 runs without XLA (XLA has no oneDNN int8 kernel): drop --jit_compile "
                        "or use --inference_dtype=float32.")
    if not int8_kernels_available():
        raise FlagError(f"--inference_dtype=int8: {UNAVAILABLE} Use --inference_dtype=float32 here.")
