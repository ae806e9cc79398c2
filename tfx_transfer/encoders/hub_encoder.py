"""`HubEncoder`: a TF Hub BERT encoder (a TF2 SavedModel) as a Keras 3 layer speaking the dict contract.

`hub.KerasLayer` is a tf-keras layer and fails inside Keras 3 models; `keras.layers.TFSMLayer` breaks with
Adam/AdamW and never passes `training`. This layer loads the module with `hub.load`, wraps every restored
`tf.Variable` in a `keras.Variable` that shares its storage (so Keras optimizers update the module's own
variables) and calls the module with `training`, so dropout inside it acts while fine-tuning.

    encoder = HubEncoder("/path/to/bert_en_uncased_L-12_H-768_A-12", trainable=True)
    model = BertClassifier(encoder, num_classes=2)

Interfaces accepted: the tfhub.dev / Model Garden TF2 encoder (`__call__(dict, training)` returning
pooled_output, sequence_output, encoder_outputs), and the legacy TF1 Hub signature (`tokens`: input_ids,
input_mask, segment_ids -> pooled_output, sequence_output).
"""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf

from tfx_transfer.keras_compat import track_variable

INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
_LEGACY = {"input_word_ids": "input_ids", "input_mask": "input_mask", "input_type_ids": "segment_ids"}


def load_module(handle: str):
    """`hub.load` with clear errors for handles that are not SavedModels."""
    import tensorflow_hub as hub

    try:
        import tensorflow_text  # noqa: F401  (preprocessing modules need its ops)
    except ImportError:
        pass
    path = os.fspath(handle)
    if os.path.exists(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        listing = ", ".join(sorted(os.listdir(path))) if os.path.isdir(path) else "a file"
        raise ValueError(f"Hub handle {path!r} is not a SavedModel (no saved_model.pb; it holds: {listing}).")
    try:
        return hub.load(path)
    except Exception as e:  # hub raises a mix of OSError / ValueError / tf errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"Cannot load the Hub module {path!r}: {first}") from e


def describe_interface(obj) -> str:
    signatures = sorted(getattr(obj, "signatures", {}) or {})
    attributes = sorted(a for a in ("variables", "trainable_variables", "vocab_file", "do_lower_case", "tokenize",
                                    "bert_pack_inputs", "mlm") if hasattr(obj, a))
    return f"signatures {signatures}, attributes {attributes}, callable: {callable(obj)}"


def legacy_signature(module, handle: str):
    """None for a module with the Model Garden interface (callable on the dict of INPUTS); the TF1 Hub signature
    ('tokens' or 'serving_default' taking input_ids/input_mask/segment_ids) otherwise.

    Raises:
        ValueError: the module has neither, listing what it offers.
    """
    if callable(module):
        return None
    signatures = getattr(module, "signatures", {}) or {}
    legacy = signatures.get("tokens") or signatures.get("serving_default")
    if legacy is None or not set(_LEGACY.values()) <= set(legacy.structured_input_signature[1]):
        raise ValueError(f"Hub module {handle!r} has no BERT encoder interface (a callable taking "
                         "input_word_ids/input_mask/input_type_ids, or a 'tokens' signature with input_ids/"
                         f"input_mask/segment_ids); it offers: {describe_interface(module)}.")
    return legacy


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", re.sub(r":\d+$", "", name))


@keras.saving.register_keras_serializable(package="tfx_transfer")
class HubEncoder(keras.layers.Layer):
    """A TF Hub BERT encoder behind the dict contract (see the module docstring).

    Args:
        handle: a local SavedModel path or anything `tensorflow_hub` resolves (TFHUB_CACHE_DIR offline).
        trainable: fine-tune the module's variables (its trainable ones) or keep them frozen.
        module: the module already loaded from `handle` (`hub.load`), so it is not loaded twice; this layer then
            owns it (its variables are the ones it trains).

    Call args: dict of int32 [B, T] inputs; training enables the module's dropout.
    Returns: {"sequence_output" [B, T, H], "pooled_output" [B, H], "encoder_outputs" [L x [B, T, H]] (when the
    module provides them), "default" [B, H]}.
    Attributes: `vocab_file` (path) and `do_lower_case` from the module, when it carries them.
    """

    def __init__(self, handle, trainable=False, module=None, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = os.fspath(handle)
        self._module = module if module is not None else load_module(self.handle)
        self._legacy = legacy_signature(self._module, self.handle)
        trainable_ids = {id(v) for v in getattr(self._module, "trainable_variables", [])}
        variables = list(getattr(self._module, "variables", []))
        if not variables and self._legacy is not None:
            variables = list(self._legacy.variables)
            trainable_ids = {id(v) for v in self._legacy.trainable_variables}
        self._hub_variables = []
        for variable in variables:
            wrapped = keras.Variable(variable, trainable=id(variable) in trainable_ids,
                                     name=_sanitize(variable.name))
            track_variable(self, wrapped)
            self._hub_variables.append(wrapped)
        self.vocab_file = None
        if hasattr(self._module, "vocab_file"):
            self.vocab_file = self._module.vocab_file.asset_path.numpy().decode()
        self.do_lower_case = bool(self._module.do_lower_case.numpy()) if hasattr(self._module, "do_lower_case") \
            else None
        self.built = True

    def call(self, inputs, training=None):
        inputs = {key: tf.cast(inputs[key], tf.int32) for key in INPUTS}
        if self._legacy is not None:
            out = self._legacy(**{_LEGACY[k]: v for k, v in inputs.items()})
        else:
            out = self._module(inputs, training=bool(training) if training is not None else False)
        result = {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"],
                  "default": out["pooled_output"]}
        if "encoder_outputs" in out:
            result["encoder_outputs"] = list(out["encoder_outputs"])
        return result

    def get_config(self):
        config = super().get_config()
        config.update(handle=self.handle)
        return config
