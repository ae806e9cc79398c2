"""The shared layer checks (layer_checks.check_layer) on the public layers and models not covered in test_layers.py,
test_bert_encoder.py and test_adapters.py: adapters, LoRA, PALs, scalar mix, the masked-LM head, the task models and
HubEncoder. Expected shapes and trainable-parameter counts are written out from the papers' formulas."""

import keras
import numpy as np
import pytest

from tfx_transfer import BertClassifier, BertEncoder, BertSpanLabeler
from tfx_transfer.layers.adapters import BottleneckAdapter, PalProjections, ProjectedAttentionAdapter
from tfx_transfer.layers.lora import LoRADelta
from tfx_transfer.layers.masked_lm import MaskedLMHead
from tfx_transfer.layers.scalar_mix import ScalarMix
from tfx_transfer.models import FeatureClassifier

from conftest import TINY
from layer_checks import check_layer, random_bert_inputs

B, T, H, V = 3, 7, TINY["hidden_size"], TINY["vocab_size"]
HIDDEN = {"x": ((None, H), "float32"), "sublayer_input": ((None, H), "float32"), "input_mask": ((None,), "int32")}
ENCODER_INPUTS = {k: ((None,), "int32") for k in ("input_word_ids", "input_mask", "input_type_ids")}


def _hidden():
    rng = np.random.default_rng(3)
    mask = random_bert_inputs(B, T, V)["input_mask"]
    return {"x": rng.normal(size=(B, T, H)).astype("float32"),
            "sublayer_input": rng.normal(size=(B, T, H)).astype("float32"), "input_mask": mask}


def _encoder_parameters(config=TINY):
    """Parameters of BERT (Devlin et al. 2019) for the tiny config: embeddings + layers + pooler."""
    h, i, v, p, t, n = (config["hidden_size"], config["intermediate_size"], config["vocab_size"],
                        config["max_position_embeddings"], 2, config["num_hidden_layers"])
    embeddings = (v + p + t) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    return embeddings + n * layer + h * h + h


@pytest.mark.parametrize("parallel", [False, True])
def test_bottleneck_adapter(parallel, tmp_path):
    m = 4  # Houlsby et al. 2019: 2md + d + m parameters per adapter
    check_layer(lambda: BottleneckAdapter(m, parallel=parallel, scale=2.0, name="adapter"), HIDDEN,
                lambda layer, x, training: layer(x["x"], sublayer_input=x["sublayer_input"], training=training),
                _hidden(), tmp_path, has_dropout=False, mask_input=None, expected_shape=(B, T, H),
                trainable_parameters=2 * m * H + H + m)


def test_lora_delta(tmp_path):
    r = 2  # Hu et al. 2022: A [in, r], B [r, out]; dropout on the input

    def make():
        # B starts at zero (the update starts at exactly zero); a trained B makes dropout and padding visible
        layer = LoRADelta(r, H, alpha=4.0, dropout_rate=0.5, name="lora")
        layer.build((None, None, H))
        layer.lora_b.assign(np.random.default_rng(5).normal(size=(r, H)).astype("float32"))
        return layer

    check_layer(make, {"x": HIDDEN["x"]}, lambda layer, x, training: layer(x["x"], training=training),
                {"x": _hidden()["x"]}, tmp_path, mask_input=None, expected_shape=(B, T, H), trainable_parameters=2 * r * H)


def test_projected_attention_adapter(tmp_path):
    m, heads = 8, 2  # Stickland & Murray 2019: V_E, V_D [H, m] each (shared) + an attention in m dimensions

    def make():
        return ProjectedAttentionAdapter(m, heads, projections=PalProjections(m, name="projections"),
                                         name="pal")

    check_layer(make, HIDDEN, lambda layer, x, training: layer(x["x"], sublayer_input=x["sublayer_input"],
                                                               attention_mask=x["input_mask"], training=training),
                _hidden(), tmp_path, has_dropout=False,  # the paper's PAL has no dropout of its own
                expected_shape=(B, T, H), trainable_parameters=2 * H * m + 4 * (m * m + m))


def test_scalar_mix(tmp_path):
    layers = 3  # Peters et al. 2018: one softmax weight per layer and a scale gamma
    specs = {f"l{i}": ((None, H), "float32") for i in range(layers)}
    data = {f"l{i}": np.random.default_rng(i).normal(size=(B, T, H)).astype("float32") for i in range(layers)}
    check_layer(lambda: ScalarMix(layers, name="scalar_mix"), specs,
                lambda layer, x, training: layer([x[f"l{i}"] for i in range(layers)]), data, tmp_path,
                has_dropout=False, mask_input=None, expected_shape=(B, T, H), trainable_parameters=layers + 1)


@keras.saving.register_keras_serializable(package="tfx_transfer_tests")
class TiedLanguageModel(keras.layers.Layer):
    """Word embeddings and a `MaskedLMHead` tied to them (the head is built for a table it does not own)."""

    def __init__(self, vocab_size, hidden_size, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.embeddings = keras.layers.Embedding(vocab_size, hidden_size, name="embeddings")
        self.head = MaskedLMHead(lambda: self.embeddings.embeddings, vocab_size, name="masked_lm")

    def build(self, ids_shape):
        self.embeddings.build(ids_shape)
        self.head.build(tuple(ids_shape) + (self.hidden_size,))

    def call(self, ids):
        return self.head(self.embeddings(ids))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "hidden_size": self.hidden_size}


def test_masked_lm_head(tmp_path):
    # google-research/bert's cls/predictions: transform dense [H, H] + bias, LayerNorm, output_bias [V]; the
    # decoder is the embedding table (tied), counted once
    check_layer(lambda: TiedLanguageModel(V, H, name="tied"), {"ids": ((None,), "int32")},
                lambda layer, x, training: layer(x["ids"]), {"ids": random_bert_inputs(B, T, V)["input_word_ids"]},
                tmp_path, has_dropout=False, mask_input=None, expected_shape=(B, T, V),
                trainable_parameters=V * H + (H * H + H) + 2 * H + V)


@pytest.mark.parametrize("model", ["classifier", "span_labeler", "feature_linear", "feature_bilstm"])
def test_task_models(model, tmp_path):
    c = 3
    make, shape, head = {
        "classifier": (lambda: BertClassifier(BertEncoder(**TINY), c), (B, c), H * c + c),
        "span_labeler": (lambda: BertSpanLabeler(BertEncoder(**TINY)), (B, T), 2 * H + 2),
        "feature_linear": (lambda: FeatureClassifier(BertEncoder(**TINY), c), (B, c), TINY["num_hidden_layers"] + 1
                           + H * c + c),
        "feature_bilstm": (lambda: FeatureClassifier(BertEncoder(**TINY), c, head="bilstm", lstm_units=4), (B, c),
                           TINY["num_hidden_layers"] + 1 + 2 * 4 * (4 * (H + 4) + 4) + 8 * c + c),
    }[model]

    def call(layer, x, training):
        out = layer(x, training=training)
        return out["start_logits"] if isinstance(out, dict) else out

    check_layer(make, ENCODER_INPUTS, call, random_bert_inputs(B, T, V), tmp_path,
                sequence_output=model == "span_labeler", expected_shape=shape,
                trainable_parameters=_encoder_parameters() + head)


def test_hub_encoder_on_a_model_garden_module(tmp_path):
    from tfx_transfer import HubEncoder

    from fixture_utils import expected, path

    stored = expected("model_garden/hub_encoder")
    data = {k: stored[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}
    config = dict(vocab_size=1571, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                  max_position_embeddings=64)
    check_layer(lambda: HubEncoder(path("model_garden/hub_encoder"), trainable=True, name="hub"), ENCODER_INPUTS,
                lambda layer, x, training: layer(x, training=training)["sequence_output"], data, tmp_path,
                expected_shape=data["input_word_ids"].shape + (32,),
                trainable_parameters=_encoder_parameters(config),
                mixed_precision=False)  # the module's computation is fixed when it was exported (float32)
