"""BERT hyper-parameters, read from Google `bert_config.json` or Hugging Face `config.json`.

`BertConfig` is used at the edges (scripts, `BertEncoder.from_config_file`, `from_pretrained`);
layers take explicit keyword arguments. The field names are the ones both Google's
`bert_config.json` and Hugging Face's `config.json` use, so either file maps 1:1 and
`BertEncoder(**config.to_dict())` builds the model.

Example:
    >>> cfg = BertConfig.from_json_file("bert_config.json")
    >>> cfg.validate()
    >>> cfg.hidden_size // cfg.num_attention_heads   # size of one attention head
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict

from tfx_transfer.io_utils import read_json

# Names users meet in configs -> the two GELU variants (and plain activations) we implement.
# "gelu" in Hugging Face is the exact erf GELU; Google TF1 BERT and keras-hub use the tanh form.
_ACTIVATION_ALIASES = {
    "gelu": "gelu",
    "gelu_exact": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_tanh": "gelu_approximate",
    "relu": "relu",
    "tanh": "tanh",
    "silu": "silu",
    "swish": "silu",
}


def canonical_activation(name: str, what: str = "hidden_act") -> str:
    """Maps an activation name from any config dialect to `gelu`, `gelu_approximate`, `relu`, `tanh` or `silu`.

    The one alias table of the package: encoder configs, adapter configs and layers all resolve names here (the
    functions themselves are in `tfx_transfer.layers.activations`). `what` names the setting in error messages.
    """
    key = str(name).strip().lower()
    if key not in _ACTIVATION_ALIASES:
        raise ValueError(
            f"{what}={name!r} is not supported; use one of {sorted(_ACTIVATION_ALIASES)} "
            "(in Hugging Face configs 'gelu' is the exact erf GELU; 'gelu_new'/'gelu_approximate'/'gelu_pytorch_tanh' "
            "are the tanh form, which is also what 'gelu' means in a Google bert_config.json)."
        )
    return _ACTIVATION_ALIASES[key]


@dataclasses.dataclass
class BertConfig:
    """Architecture of a post-LayerNorm BERT encoder (Devlin et al. 2019).

    Attributes mirror `bert_config.json`; `layer_norm_eps` is Hugging Face's field
    (Google's code hard-codes 1e-12, which is the default here).
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        self.hidden_act = canonical_activation(self.hidden_act)

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config", dialect: str = "auto") -> "BertConfig":
        """Builds a config from a Google or Hugging Face style dict; unknown keys are ignored.

        Args:
            values: the parsed JSON.
            source: where it came from, for error messages.
            dialect: "hf", "google" or "auto" (Hugging Face when `model_type`, `architectures` or
                `transformers_version` is present, else Google). The dialects differ in what "gelu" means:
                Hugging Face's is the exact erf GELU, google-research/bert's (and Model Garden's) the tanh
                approximation. A Google-dialect file may say `"gelu_approximate": false` to mean the exact one
                (google-research/bert ignores the extra key; `to_google_dict` writes it for exact-GELU models).

        Hugging Face `position_embedding_type` other than "absolute" and non-BERT `model_type`s are rejected,
        because the encoder would silently compute something else.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object with BERT hyper-parameters, got {type(values).__name__}.")
        if dialect == "auto":
            dialect = "hf" if any(k in values for k in ("model_type", "architectures", "transformers_version")) \
                else "google"
        if dialect not in ("hf", "google"):
            raise ValueError(f"dialect={dialect!r}: expected 'auto', 'hf' or 'google'.")
        model_type = values.get("model_type", "bert")
        if model_type not in ("bert", "BertModel"):
            raise ValueError(
                f"{source}: model_type={model_type!r} is not a BERT model; tfx_transfer reads BERT configs "
                "(model_type 'bert')."
            )
        position_type = values.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"{source}: position_embedding_type={position_type!r} is not supported; only 'absolute' "
                "position embeddings (original BERT) are implemented."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        if "vocab_size" not in kwargs:
            raise ValueError(f"{source}: the field 'vocab_size' is missing; every BERT config needs it.")
        if "hidden_act" in values:
            act = canonical_activation(values["hidden_act"])
            if dialect == "google" and act == "gelu" and values.get("gelu_approximate", True):
                act = "gelu_approximate"
            kwargs["hidden_act"] = act
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str, dialect: str = "auto") -> "BertConfig":
        """Reads a Google `bert_config.json` or a Hugging Face `config.json` (see `from_dict` for `dialect`).

        Args:
            path: the JSON file, or a directory holding `config.json` or `bert_config.json`.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            for name in ("config.json", "bert_config.json"):
                if os.path.isfile(os.path.join(path, name)):
                    path = os.path.join(path, name)
                    break
            else:
                raise FileNotFoundError(
                    f"No config.json or bert_config.json in the directory {path!r}; pass the config file itself."
                )
        values = read_json(path, "a BERT config (bert_config.json or config.json)")
        config = cls.from_dict(values, source=path, dialect=dialect)
        config.validate(source=path)
        return config

    # ------------------------------------------------------------------ checks
    def validate(self, source: str = "BertConfig") -> "BertConfig":
        """Raises ValueError naming the field, its value and what is expected; returns self."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{source}: {name}={value!r} must be a positive integer.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"{source}: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; each head needs hidden_size / num_attention_heads "
                "dimensions."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{source}: {name}={value!r} must be a number.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{source}: {name}={value!r} must be in [0, 1).")
        if not float(self.initializer_range) > 0:
            raise ValueError(f"{source}: initializer_range={self.initializer_range!r} must be > 0.")
        if not float(self.layer_norm_eps) > 0:
            raise ValueError(f"{source}: layer_norm_eps={self.layer_norm_eps!r} must be > 0.")
        if not isinstance(self.hidden_act, str):
            raise ValueError(f"{source}: hidden_act={self.hidden_act!r} must be a string such as 'gelu'.")
        canonical_activation(self.hidden_act)
        return self

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> Dict[str, Any]:
        """Field values with canonical activation names (what `BertEncoder(**config.to_dict())` takes)."""
        return dataclasses.asdict(self)

    def to_google_dict(self) -> Dict[str, Any]:
        """A `bert_config.json` for google-research/bert and Model Garden.

        Their "gelu" is the tanh approximation; an exact-GELU model is written as "gelu" plus
        `"gelu_approximate": false`, which those tools ignore (they will compute tanh GELU, a ~1e-3 relative
        difference) and `from_dict` honours.
        """
        values = self.to_dict()
        del values["layer_norm_eps"]
        if self.hidden_act == "gelu":
            values["gelu_approximate"] = False
        values["hidden_act"] = {"gelu_approximate": "gelu", "silu": "swish"}.get(self.hidden_act, self.hidden_act)
        return values

    def to_hf_dict(self) -> Dict[str, Any]:
        """A Hugging Face `config.json` for `BertModel`."""
        values = self.to_dict()
        values["hidden_act"] = {"gelu_approximate": "gelu_pytorch_tanh"}.get(self.hidden_act, self.hidden_act)
        values.update(model_type="bert", architectures=["BertModel"], position_embedding_type="absolute",
                      pad_token_id=0)
        return values

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads
