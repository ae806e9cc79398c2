"""A TF Serving SavedModel for a text classifier that takes raw text.

Signatures (`saved_model_cli show --all` lists them):
  serving_default(text [B] string[, text_b [B] string]) -> probabilities [B, C], logits [B, C], label_id [B] int32,
                  label [B] string; regression tasks -> score [B]
  from_ids(input_word_ids, input_mask, input_type_ids [B, T] int32) -> the same outputs, for clients that tokenise
Tokenisation (tensorflow-text) runs inside the graph with the model's own vocabulary (shipped in assets/) and
casing; texts longer than max_seq_length tokens are truncated. Loading needs the TF Text ops registered
(`import tensorflow_text`; TF Serving builds that include them).
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from tfx_transfer.export.inputs import checked_texts
from tfx_transfer.text.packer import BertPacker


def label_outputs(logits, label_names):
    """logits [..., C] (float32) -> {"logits", "probabilities" [..., C], "label_id" int32 [...], "label" string [...]}:
    the outputs of every signature that predicts a label (per text, or per token for a tagger's from_ids)."""
    label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1), "label_id": label_id,
            "label": tf.gather(label_names, label_id)}


IDS = ("input_word_ids", "input_mask", "input_type_ids")
KEPT_WHOLE = {"_noinline": True}  # tf.function attributes of a function a session optimises once, whole (model_forward)


class UntrackedFunctions:
    """Holds tf.functions out of a tf.Module's tracking (tf.saved_model.save would trace a tracked tf.function
    again); the signatures that call them hold what is saved."""

    def __init__(self, functions):
        self.functions = functions


def model_forward(call):
    """`call(inputs)` -> float32 outputs as one tf.function over encoder inputs (int32 [B, T] each) that every
    signature of an export calls: the SavedModel holds the model's graph once, not once per signature (MiniLM with
    Houlsby adapters: saved_model.pb 5.6 -> 4.9 MB, export 6.7 -> 5.6 s; three tasks in one model: 11.6 -> 7.2 MB,
    memory added by loading it 495 -> 402 MiB).

    The function is marked `_noinline`: a session (TF Serving's loader) then optimises it once as its own function
    instead of inlining a copy into every signature's graph at each call site. Grappler's constant folding, which
    re-scans the whole inlined graph until nothing changes, dominated the first request: a tiny three-task export's
    took 42 s (30 s of constant folding over 21,817 inlined nodes), 7-9 s with the function kept whole (6-7 s with
    each task's tokenisation kept whole too: multitask_module); the real MiniLM classifier's first request 3.9-4.9 s
    -> 2.0-3.1 s, later requests unchanged (2-core AMD EPYC host)."""
    spec = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in IDS}
    return tf.function(lambda inputs: tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), call(inputs)),
                       input_signature=[spec], autograph=False, experimental_attributes=KEPT_WHOLE)


class ClassifierServingModule(tf.Module):
    """Holds the Keras model, the tokenizer and the label names; see the module docstring."""

    def __init__(self, model, tokenizer, max_seq_length: int, labels: Optional[Sequence[str]], pairs: bool,
                 vocab_file: str):
        super().__init__(name="classifier_serving")
        self.model = model
        self.wordpiece = tokenizer._wordpiece
        self._tokenizer = tokenizer
        self.packer = BertPacker.for_tokenizer(tokenizer, max_seq_length, pad_to_max_length=False)
        self.regression = labels is None
        self.label_names = tf.constant(list(labels or []), tf.string)
        self.pairs = pairs
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False, name="do_lower_case")
        self.max_seq_length = tf.Variable(max_seq_length, trainable=False, name="max_seq_length")
        self._forward = UntrackedFunctions([model_forward(lambda inputs: model(inputs, training=False))])

    def _outputs(self, inputs):
        logits = self._forward.functions[0](inputs)
        if self.regression:
            return {"score": logits[:, 0]}
        return label_outputs(logits, self.label_names)

    def _from_text(self, text, text_b=None):
        if text_b is None:
            text = checked_texts(text=text)["text"]
        else:
            text, text_b = checked_texts(text=text, text_b=text_b).values()
        segments = [self._tokenizer.tokenize(text)]
        if text_b is not None:
            segments.append(self._tokenizer.tokenize(text_b))
        return self._outputs(self.packer(segments))

    def signatures(self):
        ids_spec = {name: tf.TensorSpec([None, None], tf.int32, name=name)
                    for name in ("input_word_ids", "input_mask", "input_type_ids")}
        from_ids = tf.function(lambda input_word_ids, input_mask, input_type_ids: self._outputs(
            {"input_word_ids": input_word_ids, "input_mask": input_mask, "input_type_ids": input_type_ids}),
            input_signature=[ids_spec["input_word_ids"], ids_spec["input_mask"], ids_spec["input_type_ids"]],
            autograph=False)
        if self.pairs:
            serve = tf.function(lambda text, text_b: self._from_text(text, text_b),
                                input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                                 tf.TensorSpec([None], tf.string, name="text_b")], autograph=False)
        else:
            serve = tf.function(lambda text: self._from_text(text),
                                input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
        # Neither function is kept as an attribute: tf.saved_model.save traces a tracked tf.function again (MiniLM's
        # export took 10.4 s with them, 6.7 s without).
        return {"serving_default": serve.get_concrete_function(), "from_ids": from_ids.get_concrete_function()}
