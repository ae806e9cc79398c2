"""One post-LayerNorm Transformer encoder block, with slots where adapters plug in."""

import keras

from tfx_transfer.layers.activations import get_activation
from tfx_transfer.layers.attention import MultiHeadSelfAttention, first_query_mask
from tfx_transfer.layers.dropout import Dropout
from tfx_transfer.layers.ia3 import IA3_TARGETS, IA3Scale
from tfx_transfer.layers.layer_norm import LayerNorm
from tfx_transfer.layers.token_dense import TokenDense


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TransformerBlock(keras.layers.Layer):
    """BERT's encoder layer (Devlin et al. 2019; Vaswani et al. 2017), post-LayerNorm:

        a = Dropout(SelfAttention(x))            # includes the output projection
        a = attention_adapter(a, x)              # slot 1 (skipped when None)
        x = LayerNorm(x + a)
        f = Dropout(W_out (l_ff * act(W_in x)))  # l_ff: the (IA)^3 vector, when "ffn" is an ia3 target
        f = output_adapter(f, x)                 # slot 2 (skipped when None)
        y = LayerNorm(x + f)

    The two slots are where Houlsby et al. (2019) insert bottleneck adapters: after each sub-layer's output
    projection and dropout, before the residual add and LayerNorm (adapter-bert's placement). A slot holds a
    Keras layer called as `adapter(h, sublayer_input=x, attention_mask=mask, training=training)` that returns
    [B, T, H] in place of the sub-layer output h: sequential adapters transform h, parallel ones (and PALs) add a
    function of the sub-layer input x. `None` skips the slot at no cost.

    Args:
        num_heads: attention heads; the input width H must be divisible by it.
        intermediate_size: width of the feed-forward layer.
        hidden_act: activation of the feed-forward layer ("gelu" exact, "gelu_approximate" tanh, ...).
        hidden_dropout_rate: dropout on each sub-layer's output.
        attention_dropout_rate: dropout on the attention probabilities.
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: stddev of the truncated-normal kernel initializer.
        attention_adapter, output_adapter: optional layers for the two slots.
        lora_rank, lora_alpha, lora_dropout, lora_targets: LoRA on the attention projections (see
            `MultiHeadSelfAttention`).
        ia3_targets: (IA)^3 vectors (Liu et al. 2022; `layers.ia3`): "ffn" scales the FFN's intermediate
            activation (`intermediate_ia3/scale` [I]); "key", "value", "attention_output" go to the attention.
        lora_gated, prefix_gated: UniPELT's gates on the LoRA updates and the prefix (see `MultiHeadSelfAttention`).

    Call args:
        x: float [B, T, H]; attention_mask: 0/1 [B, T] or [B, T, T]; training: enables dropout.
        first_token_only: compute the output of the first position ([CLS]) only: its query attends to every
            token's key and value, and its attention output, FFN and LayerNorms run on one row. Exactly row 0 of
            the full output (in inference; in training the dropout masks are drawn for one row). A sentence
            classifier needs nothing else from the last layer: `BertEncoder`'s pooled output is computed this
            way. Blocks with an adapter that mixes tokens (`mixes_tokens`, PALs) compute every row and return
            row 0.
        prefix: prefix-tuning keys and values [2, P, H] for the self-attention (`layers.prefix`), or None.

    Returns:
        float [B, T, H]; [B, 1, H] with `first_token_only`.

    Variables (relative paths): `self_attention/{query,key,value,attention_output}/{kernel,bias}`,
    `self_attention_layer_norm/{gamma,beta}`, `intermediate/{kernel,bias}` [H, I], `output/{kernel,bias}` [I, H],
    `output_layer_norm/{gamma,beta}`; with (IA)^3, `intermediate_ia3/scale` [I] and
    `self_attention/<target>_ia3/scale` [H].
    """

    def __init__(self, num_heads, intermediate_size, hidden_act="gelu", hidden_dropout_rate=0.1,
                 attention_dropout_rate=0.1, layer_norm_epsilon=1e-12, initializer_range=0.02,
                 attention_adapter=None, output_adapter=None, lora_rank=0, lora_alpha=16.0, lora_dropout=0.0,
                 lora_targets=("query", "value"), ia3_targets=(), lora_gated=False, prefix_gated=False, **kwargs):
        super().__init__(**kwargs)
        bad = set(ia3_targets) - set(IA3_TARGETS)
        if bad:
            raise ValueError(f"TransformerBlock ia3_targets {sorted(bad)}: choose from {', '.join(IA3_TARGETS)}.")
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_rate = hidden_dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.attention_adapter = attention_adapter
        self.output_adapter = output_adapter
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_targets = tuple(lora_targets)
        self.ia3_targets = tuple(ia3_targets)
        self.lora_gated = lora_gated
        self.prefix_gated = prefix_gated
        self._activation = get_activation(hidden_act)

        policy = self.dtype_policy
        self.self_attention = MultiHeadSelfAttention(num_heads, dropout_rate=attention_dropout_rate,
                                                     initializer_range=initializer_range, lora_rank=lora_rank,
                                                     lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                     lora_targets=lora_targets,
                                                     ia3_targets=[t for t in self.ia3_targets if t != "ffn"],
                                                     lora_gated=lora_gated, prefix_gated=prefix_gated,
                                                     name="self_attention", dtype=policy)
        self.attention_dropout = Dropout(hidden_dropout_rate, name="attention_dropout", dtype=policy)
        self.self_attention_layer_norm = LayerNorm(epsilon=layer_norm_epsilon, name="self_attention_layer_norm",
                                                   dtype=policy)
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.intermediate = TokenDense(intermediate_size, kernel_initializer=init, name="intermediate",
                                               dtype=policy)
        self.intermediate_ia3 = IA3Scale(intermediate_size, name="intermediate_ia3", dtype=policy) \
            if "ffn" in self.ia3_targets else None
        self.output_dropout = Dropout(hidden_dropout_rate, name="output_dropout", dtype=policy)
        self.output_layer_norm = LayerNorm(epsilon=layer_norm_epsilon, name="output_layer_norm", dtype=policy)

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.output_dense = TokenDense(hidden_size, kernel_initializer=init, name="output",
                                               dtype=self.dtype_policy)
        self.self_attention.build(input_shape)
        self.self_attention_layer_norm.build(input_shape)
        self.intermediate.build(input_shape)
        if self.intermediate_ia3 is not None:
            self.intermediate_ia3.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_layer_norm.build(input_shape)
        for adapter in (self.attention_adapter, self.output_adapter):
            if adapter is not None and not adapter.built:
                adapter.build(input_shape)
        self.built = True

    def call(self, x, attention_mask=None, training=None, first_token_only=False, prefix=None):
        if first_token_only and self.mixes_tokens:
            return self.call(x, attention_mask=attention_mask, training=training, prefix=prefix)[:, :1]
        attention = self.self_attention(x, attention_mask=attention_mask, training=training,
                                        first_token_only=first_token_only, prefix=prefix)
        if first_token_only:  # from here on every operation is per token: the first one's row only
            x, attention_mask = x[:, :1], first_query_mask(attention_mask)
        attention = self.attention_dropout(attention, training=training)
        if self.attention_adapter is not None:
            attention = self.attention_adapter(attention, sublayer_input=x, attention_mask=attention_mask,
                                               training=training)
        x = self.self_attention_layer_norm(x + attention)

        inner = self._activation(self.intermediate(x))  # [B, T|1, I]
        if self.intermediate_ia3 is not None:
            inner = self.intermediate_ia3(inner)
        ffn = self.output_dense(inner)
        ffn = self.output_dropout(ffn, training=training)
        if self.output_adapter is not None:
            ffn = self.output_adapter(ffn, sublayer_input=x, attention_mask=attention_mask, training=training)
        return self.output_layer_norm(x + ffn)

    @property
    def mixes_tokens(self) -> bool:
        """Whether a slot holds an adapter whose output at one position depends on the others (PALs' attention)."""
        return any(getattr(adapter, "mixes_tokens", False) for adapter in (self.attention_adapter,
                                                                          self.output_adapter))

    def compute_output_shape(self, x_shape, attention_mask_shape=None):
        input_shape = x_shape
        return tuple(input_shape)

    def compute_output_spec(self, x, attention_mask=None, training=None, first_token_only=False, prefix=None):
        shape = (x.shape[0], 1, x.shape[-1]) if first_token_only else self.compute_output_shape(x.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads, intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
            hidden_dropout_rate=self.hidden_dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
            layer_norm_epsilon=self.layer_norm_epsilon, initializer_range=self.initializer_range,
            attention_adapter=keras.saving.serialize_keras_object(self.attention_adapter),
            output_adapter=keras.saving.serialize_keras_object(self.output_adapter),
            lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
            lora_targets=list(self.lora_targets), ia3_targets=list(self.ia3_targets), lora_gated=self.lora_gated,
            prefix_gated=self.prefix_gated,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for slot in ("attention_adapter", "output_adapter"):
            config[slot] = keras.saving.deserialize_keras_object(config.get(slot))
        return cls(**config)
