"""The name tables of the four BERT checkpoint dialects tfx_transfer reads and writes.

Our paths (left column of every table) are `BertEncoder`'s variable paths; see `names.py` for how a table is
used. Shapes: H hidden size, N heads, D = H / N, I intermediate size.
"""

from __future__ import annotations

import re

from tfx_transfer.checkpoints.names import NameTable, TensorName
from tfx_transfer.checkpoints.transforms import Reshape, Transpose

_T = (Transpose(),)
_R = (Reshape(),)  # to our (target) shape

_EMBEDDINGS = "embeddings/"
_LAYER = "transformer_layer_{i}/"


def _transpose(array, config):
    return array.T


def _split_heads_in(array, config):
    """[H, H] -> [H, N, D] (Model Garden / keras-hub EinsumDense query, key, value kernels)."""
    return array.reshape(array.shape[0], config.num_attention_heads, config.head_size)


def _split_heads_bias(array, config):
    """[H] -> [N, D]."""
    return array.reshape(config.num_attention_heads, config.head_size)


def _split_heads_out(array, config):
    """[H, H] -> [N, D, H] (the attention output projection)."""
    return array.reshape(config.num_attention_heads, config.head_size, array.shape[1])


def _reshape_row(array, config):
    """[n] -> [1, n] (adapter-bert stores adapter biases as rows)."""
    return array.reshape(1, -1)


def _google_adapters():
    """adapter-bert's `feedforward_adapter` variables in the two places of each layer it inserts them."""
    rows = []
    for slot, scope in (("attention_adapter", "attention/output"), ("output_adapter", "output")):
        ours, theirs = f"{_LAYER}{slot}/", f"bert/encoder/layer_{{i}}/{scope}/adapters/"
        rows += [TensorName(ours + "down/kernel", theirs + "weights1"),
                 TensorName(ours + "down/bias", theirs + "biases1", _R, _reshape_row),
                 TensorName(ours + "up/kernel", theirs + "weights2"),
                 TensorName(ours + "up/bias", theirs + "biases2", _R, _reshape_row)]
    return rows


def _dense(ours, theirs, kernel="kernel", bias="bias", read=(), write=None, head=False):
    return [TensorName(ours + "/kernel", theirs + kernel, read, write, head),
            TensorName(ours + "/bias", theirs + bias, head=head)]


# Our task heads (tfx_transfer.models): BertClassifier's `classifier` [H, C], BertTokenClassifier's
# `token_classifier` [H, C] and BertSpanLabeler's `span_logits` [H, 2] (start, end). Each dialect below maps its
# producer's heads onto them.
CLASSIFIER = "classifier"
SPAN = "span_logits"
TOKEN_CLASSIFIER = "token_classifier"
MASKED_LM = "masked_lm"  # BertMaskedLM's head: transform dense [H, H], LayerNorm, output_bias [V] (decoder tied)
NEXT_SENTENCE = "next_sentence"  # BertMaskedLM(next_sentence=True)'s head on the pooled output [H, 2]


def _masked_lm_head(dense, layer_norm, gamma, beta, output_bias, kernel="kernel", bias="bias", read=(), write=None):
    """BERT's masked-LM head in a dialect; its decoder is the word-embedding table (tied), not a tensor to load."""
    return [*_dense(MASKED_LM + "/transform", dense, kernel, bias, read, write, head=True),
            TensorName(MASKED_LM + "/layer_norm/gamma", layer_norm + gamma, head=True),
            TensorName(MASKED_LM + "/layer_norm/beta", layer_norm + beta, head=True),
            TensorName(MASKED_LM + "/output_bias", output_bias, head=True)]


def _norm(ours, theirs, gamma="gamma", beta="beta"):
    return [TensorName(ours + "/gamma", theirs + gamma), TensorName(ours + "/beta", theirs + beta)]


def _attention_projections(theirs_for, kernel="kernel", bias="bias", split=False, transpose=False):
    """Rows for query/key/value/attention_output; `theirs_for(name)` gives the dialect prefix (ending in a separator)."""
    rows = []
    for name in ("query", "key", "value", "attention_output"):
        ours = _LAYER + "self_attention/" + name
        if transpose:
            rows += _dense(ours, theirs_for(name), kernel, bias, _T, _transpose)
        elif split:
            out = name == "attention_output"
            rows.append(TensorName(ours + "/kernel", theirs_for(name) + kernel, _R,
                                   _split_heads_out if out else _split_heads_in))
            rows.append(TensorName(ours + "/bias", theirs_for(name) + bias, () if out else _R,
                                   None if out else _split_heads_bias))
        else:
            rows += _dense(ours, theirs_for(name), kernel, bias)
    return rows


# ------------------------------------------------------------------ Google TF1 (google-research/bert, adapter-bert)
def _google_attention(name):
    return {"attention_output": "bert/encoder/layer_{i}/attention/output/dense/"}.get(
        name, f"bert/encoder/layer_{{i}}/attention/self/{name}/")


GOOGLE = NameTable(
    "google_tf1",
    [
        TensorName(_EMBEDDINGS + "word_embeddings/embeddings", "bert/embeddings/word_embeddings"),
        TensorName(_EMBEDDINGS + "position_embeddings/embeddings", "bert/embeddings/position_embeddings"),
        TensorName(_EMBEDDINGS + "token_type_embeddings/embeddings", "bert/embeddings/token_type_embeddings"),
        *_norm(_EMBEDDINGS + "layer_norm", "bert/embeddings/LayerNorm/"),
        *_attention_projections(_google_attention),
        *_norm(_LAYER + "self_attention_layer_norm", "bert/encoder/layer_{i}/attention/output/LayerNorm/"),
        *_dense(_LAYER + "intermediate", "bert/encoder/layer_{i}/intermediate/dense/"),
        *_dense(_LAYER + "output", "bert/encoder/layer_{i}/output/dense/"),
        *_norm(_LAYER + "output_layer_norm", "bert/encoder/layer_{i}/output/LayerNorm/"),
        *_dense("pooler/dense", "bert/pooler/dense/"),
        *_google_adapters(),
        # run_classifier.py's head: output_weights is [num_labels, H].
        *_dense(CLASSIFIER, "", "output_weights", "output_bias", _T, _transpose, head=True),
        # run_squad.py's head: cls/squad/output_weights is [2, H].
        *_dense(SPAN, "cls/squad/", "output_weights", "output_bias", _T, _transpose, head=True),
        # run_pretraining.py's masked-LM head (get_masked_lm_output).
        *_masked_lm_head("cls/predictions/transform/dense/", "cls/predictions/transform/LayerNorm/", "gamma", "beta",
                         "cls/predictions/output_bias"),
        # ... and its next-sentence head (get_next_sentence_output): output_weights [2, H].
        *_dense(NEXT_SENTENCE, "cls/seq_relationship/", "output_weights", "output_bias", _T, _transpose, head=True),
    ],
    # Optimizer slots (AdamWeightDecayOptimizer: adam_m/adam_v; tf.train.AdamOptimizer: Adam, Adam_1) and counters.
    ignore=[r".*/adam_[mv]", r".*/Adam(_\d+)?", r"global_step", r"beta[12]_power", r".*/Momentum",
            r"_CHECKPOINTABLE_OBJECT_GRAPH"],
    # Pretraining heads (MLM, NSP) and the task heads of run_squad.py / run_classifier.py (discarded when the
    # model being loaded has no such head), and adapter-bert's adapters when it has no adapters.
    discard=[r"cls/predictions/.*", r"cls/seq_relationship/.*", r"cls/squad/.*", r"output_weights", r"output_bias",
             r"bert/encoder/layer_\d+/(attention/)?output/adapters/.*"],
)


# ------------------------------------------------------------------ Hugging Face (PyTorch layout)
def _hf_attention(name):
    return {"attention_output": "encoder.layer.{i}.attention.output.dense."}.get(
        name, f"encoder.layer.{{i}}.attention.self.{name}.")


HF = NameTable(
    "hf_bert",
    [
        TensorName(_EMBEDDINGS + "word_embeddings/embeddings", "embeddings.word_embeddings.weight"),
        TensorName(_EMBEDDINGS + "position_embeddings/embeddings", "embeddings.position_embeddings.weight"),
        TensorName(_EMBEDDINGS + "token_type_embeddings/embeddings", "embeddings.token_type_embeddings.weight"),
        *_norm(_EMBEDDINGS + "layer_norm", "embeddings.LayerNorm.", "weight", "bias"),
        *_attention_projections(_hf_attention, "weight", "bias", transpose=True),
        *_norm(_LAYER + "self_attention_layer_norm", "encoder.layer.{i}.attention.output.LayerNorm.", "weight", "bias"),
        *_dense(_LAYER + "intermediate", "encoder.layer.{i}.intermediate.dense.", "weight", "bias", _T, _transpose),
        *_dense(_LAYER + "output", "encoder.layer.{i}.output.dense.", "weight", "bias", _T, _transpose),
        *_norm(_LAYER + "output_layer_norm", "encoder.layer.{i}.output.LayerNorm.", "weight", "bias"),
        *_dense("pooler/dense", "pooler.dense.", "weight", "bias", _T, _transpose),
    ],
    ignore=[r"embeddings\.position_ids"],
    discard=[r"cls\..*", r"classifier\..*", r"qa_outputs\..*"],
    # `BertFor*` checkpoints prefix the encoder with "bert."; old checkpoints call LayerNorm weights gamma/beta.
    rename=[(r"^bert\.", ""), (r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")],
)

# Heads of transformers' BERT task classes, by the `architectures` entry of their config.json. The same names
# (`classifier.*`) serve sentence and token classification, so only the declared architecture tells them apart
# (each goes to its own head: `classifier` or `token_classifier`); the masked-LM head of BertForMaskedLM /
# BertForPreTraining goes to `masked_lm` (its tied decoder.weight is the word embeddings), BertForPreTraining's
# next-sentence head (cls.seq_relationship, [2, H]) to `next_sentence`.
HF_HEADS = {
    "BertForSequenceClassification": _dense(CLASSIFIER, "classifier.", "weight", "bias", _T, _transpose, head=True),
    "BertForQuestionAnswering": _dense(SPAN, "qa_outputs.", "weight", "bias", _T, _transpose, head=True),
    "BertForTokenClassification": _dense(TOKEN_CLASSIFIER, "classifier.", "weight", "bias", _T, _transpose,
                                         head=True),
    "BertForMaskedLM": _masked_lm_head("cls.predictions.transform.dense.", "cls.predictions.transform.LayerNorm.",
                                       "weight", "bias", "cls.predictions.bias", "weight", "bias", _T, _transpose),
    "BertForPreTraining": [
        *_masked_lm_head("cls.predictions.transform.dense.", "cls.predictions.transform.LayerNorm.", "weight", "bias",
                         "cls.predictions.bias", "weight", "bias", _T, _transpose),
        *_dense(NEXT_SENTENCE, "cls.seq_relationship.", "weight", "bias", _T, _transpose, head=True)],
}

# These build BertModel(add_pooling_layer=False): their checkpoints have no pooler, which stays newly initialised.
HF_WITHOUT_POOLER = ("BertForTokenClassification", "BertForQuestionAnswering", "BertForMaskedLM")


def hf_table(architecture=None) -> NameTable:
    """The Hugging Face table for a checkpoint of `architecture` (config.json `architectures[0]`)."""
    if architecture not in HF_HEADS and architecture not in HF_WITHOUT_POOLER:
        return HF
    table = HF.extended(HF_HEADS.get(architecture, ()), name=f"hf_bert ({architecture})")
    if architecture in HF_WITHOUT_POOLER:
        table.optional.append(r"pooler/dense/.*")
    return table


# ------------------------------------------------------------------ Model Garden TF2 / TF Hub BERT encoders
MODEL_GARDEN = NameTable(
    "model_garden",
    [
        TensorName(_EMBEDDINGS + "word_embeddings/embeddings", "word_embeddings/embeddings"),
        TensorName(_EMBEDDINGS + "position_embeddings/embeddings", "position_embedding/embeddings"),
        TensorName(_EMBEDDINGS + "token_type_embeddings/embeddings", "type_embeddings/embeddings"),
        *_norm(_EMBEDDINGS + "layer_norm", "embeddings/layer_norm/"),
        *_attention_projections(lambda name: f"transformer/layer_{{i}}/self_attention/{name}/", split=True),
        *_norm(_LAYER + "self_attention_layer_norm", "transformer/layer_{i}/self_attention_layer_norm/"),
        *_dense(_LAYER + "intermediate", "transformer/layer_{i}/intermediate/"),
        *_dense(_LAYER + "output", "transformer/layer_{i}/output/"),
        *_norm(_LAYER + "output_layer_norm", "transformer/layer_{i}/output_layer_norm/"),
        *_dense("pooler/dense", "pooler_transform/"),
        # models.BertClassifier's ClassificationHead (head_name "sentence_prediction", use_encoder_pooler) [H, C].
        *_dense(CLASSIFIER, "sentence_prediction/logits/", head=True),
        # models.BertSpanLabeler's SpanLabeling dense [H, 2] (start, end). Model Garden gives the name to two more
        # heads: BertTokenClassifier's [H, tags] (another shape: discarded as a head that does not fit) and the
        # next-sentence head of pretraining checkpoints ([H, 2]; `model_garden_table` leaves it out of those).
        *_dense(SPAN, "predictions/transform/logits/", head=True),
    ],
    # Optimizer slots and state of object-based checkpoints (keys kept by ObjectCheckpointReader), counters.
    ignore=[r".*/\.OPTIMIZER_SLOT/.*", r"optimizer/.*", r"save_counter.*", r"_CHECKPOINTABLE_OBJECT_GRAPH",
            r"global_step.*", r"iterations?"],
    # Pretraining heads of Model Garden's BertPretrainer (masked LM, next sentence; `bert/cls/predictions/...` is
    # what tf1_bert_checkpoint_converter_lib makes of google-research/bert's masked-LM head).
    discard=[r"masked_lm/.*", r"(bert/)?cls/.*", r"(bert/)?next_sentence/.*", r"classification/.*",
             r"sentence_prediction/.*", r"predictions/transform/.*"],
    # Hub SavedModels may name variables with a ":0" suffix.
    rename=[(r":0$", "")],
)


# Pretraining checkpoints: models.BertPretrainerV2's layers.MaskedLM (named `cls/predictions` inside the `bert` model,
# so `bert/cls/predictions/...`, and the same names from tf1_bert_checkpoint_converter_lib's conversion of
# google-research/bert's head) loads into `masked_lm`. Its `next_sentence` ClassificationHead has a dense + tanh of
# its own before the logits (BERT's uses the encoder's pooler): not our next-sentence head, so it is discarded.
MODEL_GARDEN_PRETRAINING = NameTable(
    "model_garden",
    [*_masked_lm_head("bert/cls/predictions/transform/dense/", "bert/cls/predictions/transform/LayerNorm/", "gamma",
                      "beta", "bert/cls/predictions/output_bias/bias"),
     *(r for r in MODEL_GARDEN.rows if not r.ours.startswith(SPAN))],
    MODEL_GARDEN.ignore, MODEL_GARDEN.discard, MODEL_GARDEN.rename)
_MASKED_LM = re.compile(r"(bert/)?cls/predictions/.*|masked_lm/.*")


def model_garden_table(names) -> NameTable:
    """MODEL_GARDEN, or for a pretraining checkpoint (one with a masked-LM head) the table whose
    `predictions/transform/logits` is that checkpoint's next-sentence head, never a span head."""
    return MODEL_GARDEN_PRETRAINING if any(_MASKED_LM.fullmatch(name) for name in names) else MODEL_GARDEN


# ------------------------------------------------------------------ keras-hub BertBackbone
KERAS_HUB = NameTable(
    "keras_hub",
    [
        TensorName(_EMBEDDINGS + "word_embeddings/embeddings", "token_embedding/embeddings"),
        TensorName(_EMBEDDINGS + "position_embeddings/embeddings", "position_embedding/embeddings"),
        TensorName(_EMBEDDINGS + "token_type_embeddings/embeddings", "segment_embedding/embeddings"),
        *_norm(_EMBEDDINGS + "layer_norm", "embeddings_layer_norm/"),
        *_attention_projections(lambda name: f"transformer_layer_{{i}}/self_attention_layer/{name}/", split=True),
        *_norm(_LAYER + "self_attention_layer_norm", "transformer_layer_{i}/self_attention_layer_norm/"),
        *_dense(_LAYER + "intermediate", "transformer_layer_{i}/feedforward_intermediate_dense/"),
        *_dense(_LAYER + "output", "transformer_layer_{i}/feedforward_output_dense/"),
        *_norm(_LAYER + "output_layer_norm", "transformer_layer_{i}/feedforward_layer_norm/"),
        *_dense("pooler/dense", "pooled_dense/"),
        # BertTextClassifier's head (`logits` dense on the dropped-out pooled output) [H, C].
        *_dense(CLASSIFIER, "logits/", head=True),
    ],
    discard=[r"logits/.*"],
)

TABLES = {table.name: table for table in (GOOGLE, HF, MODEL_GARDEN, KERAS_HUB)}
