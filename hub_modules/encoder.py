"""A reusable TF Hub SavedModel with the tfhub.dev / Model Garden BERT encoder interface.

The exported object has `__call__(inputs, training=False)` (inputs: dict of int32 input_word_ids, input_mask,
input_type_ids [B, T]) returning pooled_output, sequence_output, encoder_outputs and default; the Reusable SavedModel
attributes `variables`, `trainable_variables`, `regularization_losses`; `vocab_file` (asset) and `do_lower_case`
(variable); a `serving_default` signature. `tfx_variable_paths` names each variable by its tfx_transfer path, so
`BertEncoder.from_hub` can unwrap the module exactly.
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfx_transfer.io_utils import atomic_directory, write_json
from tfx_transfer.keras_compat import save_for_sessions

INPUT_SPEC = {name: tf.TensorSpec([None, None], tf.int32, name=name)
              for name in ("input_word_ids", "input_mask", "input_type_ids")}


class HubEncoderModule(tf.Module):
    # Plain attributes in the saved object (tf.Module computes `variables` on the fly; hub.load needs lists).
    variables = None
    trainable_variables = None
    regularization_losses = None

    def __init__(self, encoder, vocab_file: str, do_lower_case: bool):
        super().__init__(name="bert_encoder_hub")
        self.encoder = encoder
        weights = list(encoder.weights)
        self.variables = [w.value for w in weights]
        self.trainable_variables = [w.value for w in weights if w.trainable]
        self.regularization_losses = []
        # Dropout RNG states: not weights, but the training=True function uses them, so they must be reachable.
        weight_ids = {id(w) for w in weights}
        self.random_states = [v.value for v in encoder.variables if id(v) not in weight_ids]
        self.tfx_variable_paths = tf.Variable([w.path for w in weights], trainable=False, name="tfx_variable_paths")
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")

    @tf.function
    def __call__(self, inputs, training=False):
        outputs = self.encoder(inputs, training=training)
        return {"pooled_output": outputs["pooled_output"], "sequence_output": outputs["sequence_output"],
                "encoder_outputs": list(outputs["encoder_outputs"]), "default": outputs["pooled_output"]}

    def trace(self):
        """Concrete functions for both values of `training`, and the serving signature."""
        for training in (False, True):
            self.__call__.get_concrete_function(INPUT_SPEC, training)

        @tf.function(input_signature=[INPUT_SPEC["input_word_ids"], INPUT_SPEC["input_mask"],
                                      INPUT_SPEC["input_type_ids"]])
        def serve(input_word_ids, input_mask, input_type_ids):
            out = self.__call__({"input_word_ids": input_word_ids, "input_mask": input_mask,
                                 "input_type_ids": input_type_ids}, training=False)
            return {"pooled_output": out["pooled_output"], "sequence_output": out["sequence_output"],
                    "default": out["default"]}

        return {"serving_default": serve.get_concrete_function()}


def export_encoder(encoder, tokenizer_settings, export_path: str, overwrite: bool = False) -> str:
    """Writes the Hub encoder SavedModel atomically (temporary directory + rename). Returns `export_path`.

    Args:
        tokenizer_settings: a `TokenizerSettings`; its vocabulary becomes the `vocab_file` asset, its casing
            `do_lower_case`, and all of it assets.extra/tokenizer_config.json (read back by `from_pretrained`).
    """
    module = HubEncoderModule(encoder, tokenizer_settings.vocab_file, tokenizer_settings.do_lower_case)
    signatures = module.trace()
    with atomic_directory(export_path, overwrite) as tmp:
        save_for_sessions(module, tmp, signatures)  # its serving_default loads in TF Serving too
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        write_json(os.path.join(tmp, "assets.extra", "config.json"), encoder.bert_config.to_hf_dict())
        write_json(os.path.join(tmp, "assets.extra", "tokenizer_config.json"),
                   tokenizer_settings.to_tokenizer_config())
    return os.fspath(export_path)
