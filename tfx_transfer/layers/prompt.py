"""Prompt tuning (Lester, Al-Rfou & Constant 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"): P
trainable vectors in the input of the first transformer layer, the whole network frozen.

    [CLS] t_1 ... t_n  ->  embeddings e_CLS e_1 ... e_n  ->  e_CLS p_1 ... p_P e_1 ... e_n  ->  transformer layers

The prompts go right after [CLS], so [CLS] stays at position 0 (the pooled output reads it) and the tokens keep their
position embeddings (the prompts are vectors of the layers' input space, after the embeddings' LayerNorm, with no
position of their own); they are never masked, and the encoder's outputs drop them again, so every output keeps its
[B, T, H] shape and the tokens' positions. (Hugging Face peft instead prepends its virtual tokens' embeddings before
[CLS], shifting the tokens' positions by P and pooling from the first virtual token.)

Initialisation: N(0, 1), the per-dimension scale of LayerNorm outputs; `prompts_from_vocabulary` replaces them with the
embeddings of sampled vocabulary tokens, which Lester et al. found better than random vectors (run_classifier.py
does this after loading the pretrained weights).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="tfx_transfer")
class SoftPrompt(keras.layers.Layer):
    """Inserts `prompt_length` trainable vectors after the first position of a sequence and its mask.

    Args:
        prompt_length: P.

    Call args:
        x: float [B, T, H] (the embeddings' output); mask: 0/1 [B, T].

    Returns:
        (x [B, T + P, H], mask [B, T + P]); `remove(y)` takes [B, T + P, H] back to [B, T, H].

    Variables: `prompts` [P, H].
    """

    def __init__(self, prompt_length=20, **kwargs):
        super().__init__(**kwargs)
        self.prompt_length = prompt_length

    def build(self, x_shape, mask_shape=None):
        self.prompts = self.add_weight(name="prompts", shape=(self.prompt_length, x_shape[-1]),
                                       initializer=keras.initializers.RandomNormal(stddev=1.0))
        self.built = True

    def call(self, x, mask):
        batch = ops.shape(x)[0]
        prompts = ops.broadcast_to(ops.cast(self.prompts, x.dtype)[None], (batch,) + tuple(self.prompts.shape))
        x = ops.concatenate([x[:, :1], prompts, x[:, 1:]], axis=1)  # [B, T + P, H]
        mask = ops.concatenate([mask[:, :1], ops.ones((batch, self.prompt_length), mask.dtype), mask[:, 1:]], axis=1)
        return x, mask

    def compute_output_spec(self, x, mask):
        length = None if x.shape[1] is None else x.shape[1] + self.prompt_length
        return (keras.KerasTensor((x.shape[0], length, x.shape[2]), dtype=self.compute_dtype),
                keras.KerasTensor((mask.shape[0], length), dtype=mask.dtype))

    def remove(self, y):
        """[B, T + P, H] -> [B, T, H]: the outputs at the prompts' positions dropped."""
        return ops.concatenate([y[:, :1], y[:, 1 + self.prompt_length:]], axis=1)

    def get_config(self):
        config = super().get_config()
        config["prompt_length"] = self.prompt_length
        return config


def prompts_from_vocabulary(encoder, seed: int = 0, first_id: int = 1000):
    """Sets the encoder's prompts to the embeddings (word + position 0 + type 0, LayerNorm; what [CLS]'s row is made
    of) of P vocabulary tokens drawn without replacement from ids [first_id, vocab_size) (from 1000 on: past the
    [unused] and special tokens of BERT's vocabularies). Lester et al.'s "sampled vocabulary" initialisation; call it
    after the pretrained weights are loaded. Returns the token ids used."""
    prompt = encoder.get_layer("soft_prompt")
    vocab_size = encoder.bert_config.vocab_size
    first_id = min(first_id, max(0, vocab_size - prompt.prompt_length))
    ids = np.random.default_rng(seed).choice(np.arange(first_id, vocab_size), prompt.prompt_length, replace=False)
    vectors = encoder.get_layer("embeddings")(ids[:, None].astype("int32"), np.zeros((len(ids), 1), "int32"),
                                              training=False)  # [P, 1, H]
    prompt.prompts.assign(ops.convert_to_numpy(vectors)[:, 0])
    return ids
