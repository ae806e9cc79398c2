"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017), laid out as in BERT."""

import contextlib
import contextvars
import math
from typing import Optional

import keras
from keras import ops

from tfx_transfer.layers.dropout import Dropout
from tfx_transfer.layers.gates import TokenGate
from tfx_transfer.layers.ia3 import IA3Scale, scales_input
from tfx_transfer.layers.lora import LoRADelta
from tfx_transfer.layers.prefix import with_prefix
from tfx_transfer.layers.token_dense import TokenDense

# Added to the scores of masked keys. Large enough that exp() underflows to exactly 0 in float32
# after the softmax's max-subtraction, small enough to stay finite in float16 (google-research/bert uses it).
MASK_BIAS = -10000.0


def attention_bias(attention_mask, dtype):
    """Turns a 0/1 mask into an additive bias broadcastable to scores [B, N, T, S].

    Args:
        attention_mask: [B, S] (which keys exist, e.g. `input_mask`) or [B, T, S] (per query).
    """
    mask = ops.cast(attention_mask, dtype)
    if len(mask.shape) == 2:
        mask = mask[:, None, None, :]  # [B, 1, 1, S]
    elif len(mask.shape) == 3:
        mask = mask[:, None, :, :]  # [B, 1, T, S]
    else:
        raise ValueError(f"attention_mask must have rank 2 [B, S] or 3 [B, T, S], got shape {attention_mask.shape}.")
    return (1.0 - mask) * MASK_BIAS


def first_query_mask(attention_mask):
    """The mask the first query ([CLS]) sees: a per-query mask [B, T, S] -> its first row [B, 1, S]; a key mask
    [B, S] (or None) is the same for every query and is returned as it is."""
    if attention_mask is not None and len(attention_mask.shape) == 3:
        return attention_mask[:, :1]
    return attention_mask


HEAD_BY_HEAD_FROM = 96  # inference attention runs head by head from this many keys on (bench/attention_layout.py)
_LONGEST_KEYS = contextvars.ContextVar("tfx_transfer_longest_keys", default=None)


@contextlib.contextmanager
def keys_at_most(length: Optional[int]):
    """Functions traced inside see at most `length` keys per attention (the caller's promise; None: no bound). Below
    HEAD_BY_HEAD_FROM, inference attention is then traced in its batched form alone, without the cond on the
    length: MiniLM's inference trace and first call take ~0.2 s less. A longer input still computes the same
    values, only in the form that is slower for it."""
    token = _LONGEST_KEYS.set(length)
    try:
        yield
    finally:
        _LONGEST_KEYS.reset(token)


def _matmul_transposed(a, b):
    """a [B, T, D] @ b [B, S, D]^T -> [B, T, S]; on TensorFlow one BatchMatMul with adj_y (no Transpose op)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.matmul(a, b, transpose_b=True)
    return ops.matmul(a, ops.swapaxes(b, -1, -2))


@keras.saving.register_keras_serializable(package="tfx_transfer")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Self-attention with separate query/key/value projections and an output projection.

    Kernels are 2-D [H, H] like Google TF1 BERT (`attention/self/query/kernel`), so checkpoints map with at
    most a transpose (PyTorch) or reshape (Model Garden's [H, heads, H/heads]).

    Args:
        num_heads: number of heads N; the input width H must be divisible by N.
        dropout_rate: dropout on the attention probabilities (only when `training=True`).
        initializer_range: stddev of the truncated-normal kernel initializer.
        lora_rank: > 0 adds LoRA updates (`LoRADelta`, Hu et al. 2022) to the projections in `lora_targets`,
            with `lora_alpha` and `lora_dropout`; sub-layers are named `<target>_lora`.
        ia3_targets: (IA)^3 vectors (`IA3Scale`, Liu et al. 2022) on the outputs of the "key" and/or "value"
            projections and/or on the input of "attention_output" (the context); sub-layers `<target>_ia3`.
        lora_gated, prefix_gated: UniPELT's gates (`TokenGate`, Mao et al. 2022) on the LoRA updates (one per
            target, `<target>_lora/gate`) and on the prefix keys and values (`prefix_gate`, two values), each computed
            from the layer input x over its real tokens.

    Call args:
        x: float [B, T, H].
        attention_mask: 0/1 [B, T] or [B, T, T]; 1 = may attend. None = attend everywhere.
        training: enables dropout.
        first_token_only: only the first position ([CLS]) queries: keys and values still come from every
            token, so the result is row 0 of the full call's, at 1/T of the query, score and output work.
        prefix: this layer's prefix-tuning keys and values [2, P, H] (`layers.prefix`), prepended to the tokens'
            keys and values and never masked; None = no prefix.

    Returns:
        float [B, T, H] (after the output projection `attention_output`); [B, 1, H] with `first_token_only`.
    """

    def __init__(self, num_heads, dropout_rate=0.1, initializer_range=0.02, lora_rank=0, lora_alpha=16.0,
                 lora_dropout=0.0, lora_targets=("query", "value"), ia3_targets=(), lora_gated=False,
                 prefix_gated=False, **kwargs):
        super().__init__(**kwargs)
        bad = set(ia3_targets) - {"key", "value", "attention_output"}
        if bad:
            raise ValueError(f"MultiHeadSelfAttention ia3_targets {sorted(bad)}: use key, value, attention_output.")
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_targets = tuple(lora_targets)
        self.ia3_targets = tuple(ia3_targets)
        self.lora_gated = lora_gated
        self.prefix_gated = prefix_gated
        self.lora = {}
        self.ia3 = {}
        self.prefix_gate = TokenGate(2, name="prefix_gate", dtype=self.dtype_policy) if prefix_gated else None
        self.dropout = Dropout(dropout_rate, name="dropout", dtype=self.dtype_policy)

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(
                f"Input width {hidden_size} is not divisible by num_heads={self.num_heads}."
            )
        self.hidden_size = hidden_size
        self.head_size = hidden_size // self.num_heads
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        # The projections (query, key, value, attention_output) are created here: their width is the input's.
        for name in ("query", "key", "value", "attention_output"):
            layer = TokenDense(hidden_size, kernel_initializer=init, name=name, dtype=self.dtype_policy)
            layer.build(input_shape)
            setattr(self, name, layer)
        if self.lora_rank:
            for name in self.lora_targets:
                delta = LoRADelta(self.lora_rank, hidden_size, alpha=self.lora_alpha, dropout_rate=self.lora_dropout,
                                  gated=self.lora_gated, name=f"{name}_lora", dtype=self.dtype_policy)
                delta.build(input_shape)
                setattr(self, f"{name}_lora", delta)
                self.lora[name] = delta
        for name in self.ia3_targets:
            scale = IA3Scale(hidden_size, name=f"{name}_ia3", dtype=self.dtype_policy)
            scale.build(input_shape)
            setattr(self, f"{name}_ia3", scale)
            self.ia3[name] = scale
        if self.prefix_gate is not None:
            self.prefix_gate.build(input_shape)
        self.built = True

    def _project(self, name, x, training, gates=None):
        ia3 = self.ia3.get(name)
        if ia3 is not None and scales_input(name):
            x = ia3(x)
        out = getattr(self, name)(x)
        if name in self.lora:
            out = out + self.lora[name](x, training=training, gate=(gates or {}).get(name))
        if ia3 is not None and not scales_input(name):
            out = ia3(out)
        return out

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, self.head_size))  # [B, T, N, D]
        return ops.transpose(x, (0, 2, 1, 3))  # [B, N, T, D]

    def call(self, x, attention_mask=None, training=None, first_token_only=False, prefix=None):
        queries = x[:, :1] if first_token_only else x  # [B, T|1, H]
        # UniPELT's gates read the whole layer input (every token's, whichever rows are computed)
        gates = {name: delta.gate_value(x, attention_mask) for name, delta in self.lora.items() if delta.gated}
        prefix_gate = self.prefix_gate(x, attention_mask) if self.prefix_gate is not None and prefix is not None \
            else None  # [B, 2]
        if first_token_only:
            attention_mask = first_query_mask(attention_mask)
        # Scaling q before the product is cheaper than scaling the [B, N, T, T] scores.
        q = self._project("query", queries, training, gates) * (1.0 / math.sqrt(self.head_size))  # [B, T|1, H]
        k = self._project("key", x, training, gates)  # [B, S, H]
        v = self._project("value", x, training, gates)  # [B, S, H]
        bias = None if attention_mask is None else attention_bias(attention_mask, q.dtype)  # [B, 1, 1|T, S]
        if prefix is not None:  # S -> P + S keys and values
            k, v, bias = with_prefix(k, v, bias, prefix, prefix_gate)
        if training:
            context = self._attend_batched(q, k, v, bias, training)
        else:
            context = self._attend_for_inference(q, k, v, bias)
        return self._project("attention_output", context, training, gates)  # [B, T, H]

    def _attend_for_inference(self, q, k, v, bias):
        """The context [B, T, H] without dropout: one batch over the heads for fewer than HEAD_BY_HEAD_FROM keys,
        head by head from there on (a `cond` on the key length when it is only known at run time).

        Each form wins where the other loses (bench/results/attention_layout.md, MiniLM, 2026-12-06): head by head
        keeps each head's scores in the CPU cache, 1.03-1.05x faster at [32, 128] and 1.08-1.11x at [8, 384]; at
        short lengths its 144 small matmuls and 72 softmaxes (oneDNN spends ~30 us a call on them) cost more than
        the work, and the batched form is 1.27-1.30x faster for one request of 25 tokens and 1.05-1.09x at [32, 16]
        (three runs). On the host of 2026-12-01 head by head was 1.42x faster at [8, 384] and 1.13x at [32, 128]."""
        length, longest = ops.shape(k)[1], _LONGEST_KEYS.get()
        if length is None or (longest is not None and longest < HEAD_BY_HEAD_FROM):  # symbolic build, or keys_at_most
            return self._attend_batched(q, k, v, bias, False)
        if isinstance(length, int):
            return self._attend_head_by_head(q, k, v, bias) if length >= HEAD_BY_HEAD_FROM \
                else self._attend_batched(q, k, v, bias, False)
        return ops.cond(length >= HEAD_BY_HEAD_FROM, lambda: self._attend_head_by_head(q, k, v, bias),
                        lambda: self._attend_batched(q, k, v, bias, False))

    def _attend_batched(self, q, k, v, bias, training):
        """q [B, T, H] (scaled), k, v [B, S, H] -> the context [B, T, H] through `_attend` over [B, N, T, S]."""
        context = self._attend(*(self._split_heads(t) for t in (q, k, v)), bias, training)  # [B, N, T, D]
        return ops.reshape(ops.transpose(context, (0, 2, 1, 3)), ops.shape(q))

    def _attend(self, q, k, v, bias, training):
        """softmax(q k^T + bias) v over the heads, as one [B, N, T, S] batch. Returns [B, N, T, D]."""
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # [B, N, T, S]
        if bias is not None:
            scores = scores + bias
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)  # [B, N, T, S]
        return ops.matmul(probs, v)  # [B, N, T, D]

    def _attend_head_by_head(self, q, k, v, bias):
        """`_attend` one head at a time on the unsplit projections (inference: no dropout).

        Args:
            q: [B, T, H] (already scaled); k, v: [B, S, H]; bias: [B, 1, 1|T, S] or None.

        Returns:
            the context [B, T, H], heads side by side as the output projection reads them.

        Each head's scores [B, T, S] stay in the CPU cache between the two matmuls and the softmax, where the
        batched form streams [B, N, T, S] through memory. The heads are the projections' column blocks (one Split
        op each, no reshape or transpose to [B, N, T, D] and back). Training keeps the batched form: the backward
        pass of twelve small heads has twice the ops and is slower at GLUE lengths. XLA fuses either form.
        """
        heads_q, heads_k, heads_v = (ops.split(t, self.num_heads, axis=-1) for t in (q, k, v))  # N x [B, T|S, D]
        if bias is not None:
            bias = ops.squeeze(bias, axis=1)  # [B, 1|T, S]
        heads = []
        for q_h, k_h, v_h in zip(heads_q, heads_k, heads_v):
            scores = _matmul_transposed(q_h, k_h)  # [B, T, S]
            if bias is not None:
                scores = scores + bias
            heads.append(ops.matmul(ops.softmax(scores, axis=-1), v_h))  # [B, T, D]
        return ops.concatenate(heads, axis=-1)  # [B, T, H]

    def compute_output_shape(self, x_shape, attention_mask_shape=None):
        input_shape = x_shape
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, dropout_rate=self.dropout_rate,
                      initializer_range=self.initializer_range, lora_rank=self.lora_rank, lora_alpha=self.lora_alpha,
                      lora_dropout=self.lora_dropout, lora_targets=list(self.lora_targets),
                      ia3_targets=list(self.ia3_targets), lora_gated=self.lora_gated, prefix_gated=self.prefix_gated)
        return config
