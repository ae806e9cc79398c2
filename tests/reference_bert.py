"""An independent NumPy forward pass of BERT, written from the paper and the Hugging Face weight layout.

It reads the checkpoint's own tensor names (not tfx_transfer's assignment map), computes in float64 with the
exact erf GELU (or tanh), and is the reference our encoder is compared against.
"""

import math

import numpy as np

_erf = np.vectorize(math.erf)


def gelu(x, approximate=False):
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def linear(x, weights, name):
    """PyTorch Linear: y = x W^T + b with W [out, in]."""
    return x @ weights[name + ".weight"].T + weights[name + ".bias"]


def bert_forward(weights, config, input_ids, input_mask, type_ids, approximate_gelu=False):
    """Returns (sequence_output [B, T, H], pooled_output [B, H], all layer outputs) in float64."""
    w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in weights.items()}
    eps = config.get("layer_norm_eps", 1e-12)
    heads = config["num_attention_heads"]
    batch, length = input_ids.shape
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    d = hidden // heads
    x = (w["embeddings.word_embeddings.weight"][input_ids]
         + w["embeddings.position_embeddings.weight"][:length][None]
         + w["embeddings.token_type_embeddings.weight"][type_ids])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - input_mask[:, None, None, :].astype(np.float64)) * -1e9
    layers = []
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def heads_of(name):
            return linear(x, w, p + name).reshape(batch, length, heads, d).transpose(0, 2, 1, 3)

        q, k, v = heads_of("attention.self.query"), heads_of("attention.self.key"), heads_of("attention.self.value")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        attention = linear(context, w, p + "attention.output.dense")
        x = layer_norm(x + attention, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        ffn = linear(gelu(linear(x, w, p + "intermediate.dense"), approximate_gelu), w, p + "output.dense")
        x = layer_norm(x + ffn, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        layers.append(x)
    pooled = np.tanh(linear(x[:, 0], w, "pooler.dense"))
    return x, pooled, layers
