"""Built-in assignment map for Hugging Face BERT checkpoints (safetensors; PyTorch layout).

Names appear with or without the `bert.` prefix (`BertModel` vs `BertFor*` checkpoints); linear weights are
PyTorch `[out, in]` and are transposed to Keras `[in, out]`; old checkpoints name LayerNorm parameters
`gamma`/`beta` instead of `weight`/`bias`. `embeddings.position_ids` is a buffer, not a weight.
"""

from tfx_transfer.checkpoints.assignment_map import AssignmentMap
from tfx_transfer.checkpoints.transforms import Transpose

_P = r"(?:bert\.)?"
_LAYER = _P + r"encoder\.layer\.(\d+)\."
_T = (Transpose(),)


def _dense(source, target):
    """Rules for a PyTorch Linear `source` -> Keras Dense `target`."""
    return [(source + r"\.weight", target + "/kernel", _T), (source + r"\.bias", target + "/bias")]


def _layer_norm(source, target):
    return [(source + r"\.(?:weight|gamma)", target + "/gamma"), (source + r"\.(?:bias|beta)", target + "/beta")]


HF_BERT_RULES = [
    (_P + r"embeddings\.word_embeddings\.weight", "embeddings/word_embeddings/embeddings"),
    (_P + r"embeddings\.position_embeddings\.weight", "embeddings/position_embeddings/embeddings"),
    (_P + r"embeddings\.token_type_embeddings\.weight", "embeddings/token_type_embeddings/embeddings"),
    *_layer_norm(_P + r"embeddings\.LayerNorm", "embeddings/layer_norm"),
    *_dense(_LAYER + r"attention\.self\.(query|key|value)", r"transformer_layer_\1/self_attention/\2"),
    *_dense(_LAYER + r"attention\.output\.dense", r"transformer_layer_\1/self_attention/attention_output"),
    *_layer_norm(_LAYER + r"attention\.output\.LayerNorm", r"transformer_layer_\1/self_attention_layer_norm"),
    *_dense(_LAYER + r"intermediate\.dense", r"transformer_layer_\1/intermediate"),
    *_dense(_LAYER + r"output\.dense", r"transformer_layer_\1/output"),
    *_layer_norm(_LAYER + r"output\.LayerNorm", r"transformer_layer_\1/output_layer_norm"),
    *_dense(_P + r"pooler\.dense", "pooler/dense"),
]


def hf_bert_map() -> AssignmentMap:
    """HF `BertModel` / `BertFor*` names -> tfx_transfer variable paths.

    Discarded (recognised, not loaded into an encoder): pretraining heads `cls.*` (MLM, NSP) and task heads
    `classifier.*`, `qa_outputs.*`.
    """
    return AssignmentMap(
        rules=HF_BERT_RULES,
        ignore=[r"(?:bert\.)?embeddings\.position_ids"],
        discard=[r"cls\..*", r"classifier\..*", r"qa_outputs\..*"],
        name="hf_bert",
    )
