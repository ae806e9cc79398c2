"""BERT encoder built from tfx_transfer layers, speaking the TF Hub BERT dict contract."""

from __future__ import annotations

import os

import keras

from tfx_transfer.config import BertConfig
from tfx_transfer.keras_compat import sublayers
from tfx_transfer.layers.adapter_config import AdapterConfig
from tfx_transfer.layers.adapter_slots import (block_adaptation_kwargs, prefix_layers, prompt_layer,
                                               shared_adaptation_layers)
from tfx_transfer.layers.embeddings import BertEmbeddings
from tfx_transfer.layers.pooler import BertPooler
from tfx_transfer.layers.transformer_block import TransformerBlock

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertEncoder(keras.Model):
    """Post-LayerNorm BERT (Devlin et al. 2019) as a functional Keras 3 model.

    Inputs (dict, int32, any batch and sequence length up to `max_position_embeddings`):
        input_word_ids [B, T], input_mask [B, T] (1 = real token), input_type_ids [B, T].
    Outputs (dict; the TF Hub / Model Garden BERT encoder interface):
        sequence_output [B, T, H], pooled_output [B, H] (tanh dense on [CLS]),
        encoder_outputs: list of num_hidden_layers tensors [B, T, H], default = pooled_output.

    The pooled output reads the last layer's [CLS] row from a second call of that layer that computes only it
    (`TransformerBlock(first_token_only=True)`: its query attends to every token; attention output, FFN and
    LayerNorms on one row). A model that uses only `pooled_output` (a sentence classifier, its export) thus skips
    the last layer's work on every other position, which TensorFlow prunes from the traced graph: 10 H^2 (T - 1) of
    a 6-layer MiniLM's 72 H^2 T projection multiply-adds, 12.9% at T = 14 (SST-2; training +10% examples/s,
    bench/results/first_token_path.md), 13.9% for long sequences. Models that use the sequence output too compute the
    last layer's keys and values twice (2 of its 12 H x H-sized products per token).

    Constructor arguments are the `BertConfig` field names, so `BertEncoder(**config.to_dict())` works.
    Every transformer block has two adapter slots (see `TransformerBlock`); `adapters=AdapterConfig(...)` fills
    them (bottleneck adapters, PALs) or adds LoRA or (IA)^3 to the attention projections and FFN, in all layers or
    the chosen ones; prefix tuning's keys and values come from one `prefix_encoder` layer for every adapted block;
    prompt tuning's vectors (`soft_prompt`) join the first layer's input after [CLS] and leave the outputs again.

    Variable paths (used by checkpoint assignment maps): `embeddings/...`, `transformer_layer_{i}/...`,
    `pooler/dense/{kernel,bias}`.

    Example:
        >>> encoder = BertEncoder.from_pretrained("all-MiniLM-L6-v2")
        >>> outputs = encoder(preprocessor(["hello world"]))
        >>> outputs["sequence_output"].shape   # (1, T, 384)
    """

    def __init__(self, vocab_size, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                 initializer_range=0.02, layer_norm_eps=1e-12, adapters=None, name="bert_encoder", dtype=None,
                 **kwargs):
        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                            num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                            hidden_act=hidden_act, hidden_dropout_prob=hidden_dropout_prob,
                            attention_probs_dropout_prob=attention_probs_dropout_prob,
                            max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
                            initializer_range=initializer_range, layer_norm_eps=layer_norm_eps).validate()
        adapters = AdapterConfig.from_dict(adapters) if adapters is not None else None
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        shared = shared_adaptation_layers(adapters, hidden_size, dtype) if adapters else {}

        embeddings = BertEmbeddings(vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                                    dropout_rate=hidden_dropout_prob, layer_norm_epsilon=layer_norm_eps,
                                    initializer_range=initializer_range, name="embeddings", dtype=dtype)
        x = embeddings(inputs["input_word_ids"], inputs["input_type_ids"])
        mask = inputs["input_mask"]
        soft_prompt = prompt_layer(adapters, dtype)  # prompt tuning: P vectors after [CLS], removed from the outputs
        if soft_prompt is not None:
            x, mask = soft_prompt(x, mask)  # [B, T + P, H], [B, T + P]
        prefix_encoder, prefix_rows = prefix_layers(adapters, num_hidden_layers, hidden_size, initializer_range, dtype)
        prefixes = prefix_encoder(x) if prefix_encoder is not None else None  # [L', 2, P, H]
        encoder_outputs, first_token = [], None
        for index in range(num_hidden_layers):
            extra = block_adaptation_kwargs(adapters, index, num_hidden_layers, shared, dtype) if adapters else {}
            prefix = {"prefix": prefixes[prefix_rows[index]]} if index in prefix_rows else {}
            block = TransformerBlock(num_attention_heads, intermediate_size, hidden_act=config.hidden_act,
                                     hidden_dropout_rate=hidden_dropout_prob,
                                     attention_dropout_rate=attention_probs_dropout_prob,
                                     layer_norm_epsilon=layer_norm_eps, initializer_range=initializer_range,
                                     name=f"transformer_layer_{index}", dtype=dtype, **extra)
            if index == num_hidden_layers - 1:  # the pooled output's own path: see the class docstring
                first_token = block(x, attention_mask=mask, first_token_only=True, **prefix)
            x = block(x, attention_mask=mask, **prefix)
            encoder_outputs.append(soft_prompt.remove(x) if soft_prompt is not None else x)
        x = encoder_outputs[-1]
        pooled = BertPooler(initializer_range=initializer_range, name="pooler", dtype=dtype)(first_token)
        outputs = {"sequence_output": x, "pooled_output": pooled, "encoder_outputs": encoder_outputs,
                   "default": pooled}
        super().__init__(inputs=inputs, outputs=outputs, name=name, dtype=dtype, **kwargs)
        self.bert_config = config
        self.adapters = adapters
        # Set by `from_pretrained` / `from_hub` (and kept by `merge_adaptation`, `load_adaptation`): where the weights
        # came from (`PretrainedFiles`: files, config, tokenizer settings, head labels) and the `LoadReport`. Not
        # serialised: a model reloaded from .keras has neither, and the writers then need a vocab_file.
        self.pretrained = None
        self.load_report = None

    # ------------------------------------------------------------------ construction at the edges
    @classmethod
    def from_bert_config(cls, config: BertConfig, **overrides) -> "BertEncoder":
        """Builds a randomly initialised encoder; `overrides` replace config fields (e.g. hidden_act=...)."""
        values = config.to_dict()
        unknown = sorted(set(overrides) - set(values) - {"adapters", "name", "dtype", "trainable"})
        if unknown:
            raise TypeError(f"Unknown encoder option(s) {unknown}; valid config fields: {sorted(values)}.")
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_config_file(cls, path: str | os.PathLike, **overrides) -> "BertEncoder":
        """Builds a randomly initialised encoder from a `bert_config.json` / HF `config.json`."""
        return cls.from_bert_config(BertConfig.from_json_file(path), **overrides)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, strict: bool = True, assignment_map=None,
                        verbose: bool = False, config_file=None, vocab_file=None, do_lower_case=None,
                        **overrides) -> "BertEncoder":
        """Builds an encoder and loads pretrained weights.

        Args:
            path_or_name: a packaged model name ("all-MiniLM-L6-v2"), a model directory in the layout of Hugging
                Face (transformers 4 or 5), google-research/bert, Model Garden, keras-hub (a preset), TF Hub (a
                SavedModel, TF1 Hub modules included) or ours, or a TF checkpoint prefix (see
                `tfx_transfer.pretrained`).
            config_file, vocab_file, do_lower_case: what a directory of bare checkpoints lacks, or overrides of
                what it records (see `resolve_pretrained`).
            strict: raise if a model variable is not in the checkpoint or a checkpoint tensor is not used
                (recognised pretraining heads and ignorable tensors excepted). See `load_checkpoint`.
            assignment_map: optional `AssignmentMap` decided before the format's built-in map.
            adapters (in overrides): an `AdapterConfig`; adapter weights are reported as newly initialised.
            verbose: print the load report.
            **overrides: config fields to change, e.g. `hidden_act="gelu_approximate"`,
                `hidden_dropout_prob=0.0`.

        Returns:
            The encoder; its `load_report` attribute holds the `LoadReport` and `pretrained` the resolved files.

        Raises:
            ValueError: the vocabulary has more tokens than the embedding table has rows.
        """
        from tfx_transfer.pretrained import load_encoder  # the entry point over the loader (a layer above)

        return load_encoder(cls, path_or_name, strict=strict, assignment_map=assignment_map, verbose=verbose,
                            config_file=config_file, vocab_file=vocab_file, do_lower_case=do_lower_case, **overrides)

    @classmethod
    def from_hub(cls, handle, adapters=None, strict: bool = True, **overrides) -> "BertEncoder":
        """Unwraps a BERT-like TF Hub module into a transparent `BertEncoder` with the same outputs.

        Reads the module's variables by their names (Model Garden / tfhub.dev `transformer/layer_N/...`, a TF1 Hub
        module's google-research/bert names, or the tfx_transfer paths `hub_modules.export_encoder` records),
        builds the architecture they imply and loads them, so adapters (`adapters=AdapterConfig(...)`), LoRA,
        freezing schemes and layer-wise learning rates work on a model that came from TF Hub. Vocabulary and casing
        come from the module (`pretrained` attribute). Bookkeeping variables (Model Garden's `do_lower_case`) are
        recognised, not loaded.

        Raises:
            CheckpointMismatchError (strict): variables that could not be mapped, with the full load report.
        """
        from tfx_transfer.pretrained import hub_module_path, load_encoder  # the entry point over the loader

        return load_encoder(cls, hub_module_path(handle), strict=strict, adapters=adapters, **overrides)

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        # The layers' policy (a functional model keeps float32 as its own whatever `dtype` it was given).
        config = {"name": self.name, "trainable": self.trainable,
                  "dtype": self.get_layer("embeddings").dtype_policy.name}
        config.update(self.bert_config.to_dict())
        config["adapters"] = self.adapters.to_dict() if self.adapters else None
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def find_encoder(model) -> BertEncoder:
    """The `BertEncoder` of `model`: the model itself, or the one encoder nested in a task model.

    Raises:
        ValueError: `model` holds no BertEncoder, or more than one (e.g. a black-box `HubEncoder`).
    """
    if isinstance(model, BertEncoder):
        return model
    found = [layer for layer in sublayers(model) if isinstance(layer, BertEncoder)]
    if len(found) != 1:
        raise ValueError(f"Expected exactly one BertEncoder inside {model.name!r}, found {len(found)}.")
    return found[0]
