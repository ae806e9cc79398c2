"""`AdapterConfig`: one object describing a parameter-efficient adaptation of a BERT encoder.

Kinds (wired into `TransformerBlock`: its two slots, its projections, or its attention's keys and values):
  houlsby   bottleneck adapters after the attention output and after the FFN output, before the residual add
            and LayerNorm (Houlsby et al. 2019, adapter-bert's placement)
  pfeiffer  one bottleneck adapter after the FFN output only (Pfeiffer et al. 2021)
  parallel  bottleneck adapters in parallel to the FFN (and optionally the attention) sub-layer, reading its
            input and adding `scale` x their output to its output (He et al. 2022)
  lora      low-rank updates of the attention query and value projections (Hu et al. 2022); mergeable
  compacter bottleneck adapters whose projections are low-rank PHM layers with rules shared by every layer
            (Mahabadi et al. 2021; Houlsby placement, the paper's Compacter; sublayers=("ffn",) is Compacter++);
            the identity at init (its up projection's right factors start at zero)
  pal       projected attention layers: a small multi-head attention in a low-dimensional space in parallel
            to self-attention, with projections shared across layers (Stickland & Murray 2019)
  ia3       (IA)^3: learned vectors rescaling the keys, values and FFN intermediate activations (Liu et al. 2022);
            identity at init, L (d_k + d_v + d_ff) parameters, mergeable
  prefix    prefix tuning: P trainable key and value vectors prepended in every layer's self-attention (Li & Liang
            2021), trained directly or through the paper's MLP reparameterisation, which adapter files drop; not the
            identity at init
  prompt    prompt tuning: P trainable vectors in the first layer's input, after [CLS] (Lester et al. 2021); the
            outputs drop them again; not the identity at init

Unions of kinds, each wired where it belongs (`AdapterUnion`, AdapterHub's ConfigUnion): MAM (He et al. 2022: prefix
tuning + a scaled parallel adapter beside the FFN), UniPELT (Mao et al. 2022: gated LoRA + prefix + adapter).

Compositions of named bottleneck adapters in the same slots (`AdapterComposition`, layers/composite.py):
  stack     applied in order, each to the previous one's output (AdapterHub's Stack; MAD-X's language adapter under
            a task adapter, Pfeiffer et al. 2020)
  fuse      all read the slot's input, their outputs combined by AdapterFusion's attention (Pfeiffer et al. 2021)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Tuple

from tfx_transfer.config import canonical_activation
from tfx_transfer.layers.ia3 import IA3_TARGETS

KINDS = ("houlsby", "pfeiffer", "parallel", "compacter", "lora", "pal", "ia3", "prefix", "prompt")
COMPOSITE_KINDS = ("stack", "fuse")  # AdapterComposition
PRESETS = ("mam", "unipelt")  # AdapterUnion.mam / .unipelt, by name (--adapter_kind)
_SLOT_USERS = ("houlsby", "pfeiffer", "parallel", "compacter", "pal")  # kinds that fill TransformerBlock slots
SLOT_KINDS = ("houlsby", "pfeiffer", "parallel")  # bottleneck adapters in the blocks' slots: what compositions hold
MERGEABLE_KINDS = ("lora", "ia3")  # folded into the frozen kernels for serving (adaptation.surgery)
_SIZED_KINDS = ("houlsby", "pfeiffer", "parallel", "compacter", "pal")  # the kinds `size` describes
_DEFAULT_SUBLAYERS = {"houlsby": ("attention", "ffn"), "pfeiffer": ("ffn",), "parallel": ("ffn",),
                      "compacter": ("attention", "ffn"), "prompt": (),
                      "lora": (), "pal": ("attention",), "ia3": (), "prefix": ()}


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """An adaptation of a BERT encoder.

    Attributes:
        kind: one of KINDS.
        size: bottleneck width m (houlsby/pfeiffer/parallel) or the PAL projection width.
        activation: bottleneck nonlinearity: gelu (default), relu, tanh, swish.
        init_stddev: truncated-normal stddev of adapter kernels (the paper: 1e-2; adapter-bert's code: 1e-3).
        zero_init_up: zero the up-projection, so the adapted encoder starts exactly as the base one.
        layers: indices of the transformer layers that get adapters (None = all); see `top_layers`.
        sublayers: "attention" and/or "ffn" (bottleneck kinds); default per kind.
        scale: multiplier of parallel adapters' output (He et al.: 4.0).
        lora_rank, lora_alpha, lora_dropout, lora_targets: LoRA's r, alpha (scale alpha / r), dropout on its
            input, and which projections it updates (query, key, value, attention_output).
        pal_heads: attention heads inside a PAL; pal_share: "projections" (the paper: encoder/decoder projections
            shared across layers, attention per layer), "all" or "none".
        ia3_targets: what (IA)^3 rescales (`layers.ia3.IA3_TARGETS`): the paper's key, value and ffn by default;
            add attention_output for peft's BERT default.
        prompt_length: P, the soft prompt's vectors (prompt).
        drop_lowest: AdapterDrop (Rücklé et al. 2021): no adaptation in the lowest n layers (with `layers`, both
            apply). Nothing trains below the lowest adapted layer (the strategies train the LayerNorms of adapted
            layers only), so the backward pass stops there: faster training, and, for several tasks on one base,
            lower layers they share.
        gated: UniPELT's gate (Mao et al. 2022; `layers.gates.TokenGate`) on the module's contribution, for bottleneck
            adapters (their bottleneck output), LoRA (its update) and prefix tuning (its keys and values).
        phm_dim, phm_rank: Compacter's n (the rules A_i are n x n; the widths must be divisible by it; AdapterHub: 4)
            and the rank r of its factors B_i (the paper: 1).
        prefix_length: P, the prefix positions per layer (prefix). prefix_projection: the width h of Li & Liang's
            reparameterisation MLP (H -> h -> 2 L H, tanh; they use 512); 0 (peft's default, and better on
            SST-2-8k: bench/results/peft_methods.md) trains the prefixes directly.
    """

    kind: str = "houlsby"
    size: int = 64
    activation: str = "gelu"
    init_stddev: float = 1e-2
    zero_init_up: bool = False
    layers: Optional[Tuple[int, ...]] = None
    sublayers: Optional[Tuple[str, ...]] = None
    scale: float = 4.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: Tuple[str, ...] = ("query", "value")
    pal_heads: int = 12
    pal_share: str = "projections"
    ia3_targets: Tuple[str, ...] = ("key", "value", "ffn")
    prefix_length: int = 20
    prefix_projection: int = 0
    phm_dim: int = 4
    phm_rank: int = 1
    prompt_length: int = 20
    gated: bool = False
    drop_lowest: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"AdapterConfig kind={self.kind!r} is unknown; choose one of {list(KINDS)}.")
        canonical_activation(self.activation, "AdapterConfig activation")
        if self.kind in _SIZED_KINDS and (not isinstance(self.size, int) or self.size < 1):
            raise ValueError(f"AdapterConfig size={self.size!r} must be a positive integer.")
        if not self.init_stddev > 0:
            raise ValueError(f"AdapterConfig init_stddev={self.init_stddev!r} must be > 0.")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        sublayers = _DEFAULT_SUBLAYERS[self.kind] if self.sublayers is None else tuple(self.sublayers)
        bad = set(sublayers) - {"attention", "ffn"}
        if bad or (self.kind in ("houlsby", "pfeiffer", "parallel", "compacter") and not sublayers):
            raise ValueError(f"AdapterConfig sublayers={self.sublayers!r}: use 'attention' and/or 'ffn'.")
        object.__setattr__(self, "sublayers", sublayers)
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        object.__setattr__(self, "ia3_targets", tuple(self.ia3_targets))
        if self.kind == "ia3" and (not self.ia3_targets or set(self.ia3_targets) - set(IA3_TARGETS)):
            raise ValueError(f"AdapterConfig ia3_targets={self.ia3_targets!r}: choose from {', '.join(IA3_TARGETS)}.")
        if self.kind == "lora":
            if not isinstance(self.lora_rank, int) or self.lora_rank < 1:
                raise ValueError(f"AdapterConfig lora_rank={self.lora_rank!r} must be a positive integer.")
            bad = set(self.lora_targets) - {"query", "key", "value", "attention_output"}
            if bad or not self.lora_targets:
                raise ValueError(f"AdapterConfig lora_targets={self.lora_targets!r}: choose from query, key, value, "
                                 "attention_output.")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ValueError(f"AdapterConfig lora_dropout={self.lora_dropout!r} must be in [0, 1).")
        if self.kind == "compacter":
            for name in ("phm_dim", "phm_rank"):
                if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                    raise ValueError(f"AdapterConfig {name}={getattr(self, name)!r} must be a positive integer.")
            if self.size % self.phm_dim:
                raise ValueError(f"AdapterConfig size={self.size} must be divisible by phm_dim={self.phm_dim} "
                                 "(Compacter's PHM projections).")
        if self.gated and self.kind not in ("houlsby", "pfeiffer", "parallel", "compacter", "lora", "prefix"):
            raise ValueError(f"AdapterConfig gated=True: UniPELT's gates are for bottleneck adapters, LoRA and prefix "
                             f"tuning, not {self.kind}.")
        if not isinstance(self.drop_lowest, int) or self.drop_lowest < 0:
            raise ValueError(f"AdapterConfig drop_lowest={self.drop_lowest!r} must be an integer >= 0.")
        if self.drop_lowest and self.kind == "prompt":
            raise ValueError("AdapterConfig drop_lowest with prompt tuning: its vectors enter the first layer.")
        if self.kind == "prompt" and (not isinstance(self.prompt_length, int) or self.prompt_length < 1):
            raise ValueError(f"AdapterConfig prompt_length={self.prompt_length!r} must be a positive integer.")
        if self.kind == "prefix":
            if not isinstance(self.prefix_length, int) or self.prefix_length < 1:
                raise ValueError(f"AdapterConfig prefix_length={self.prefix_length!r} must be a positive integer.")
            if not isinstance(self.prefix_projection, int) or self.prefix_projection < 0:
                raise ValueError(f"AdapterConfig prefix_projection={self.prefix_projection!r} must be an integer >= 0 "
                                 "(0: no reparameterisation).")
        if self.pal_share not in ("projections", "all", "none"):
            raise ValueError(f"AdapterConfig pal_share={self.pal_share!r}: choose projections, all or none.")

    @classmethod
    def top_layers(cls, k: int, num_layers: int, **kwargs) -> "AdapterConfig":
        """Adapters in the top `k` of `num_layers` layers only."""
        if not 1 <= k <= num_layers:
            raise ValueError(f"top_layers k={k} must be between 1 and num_layers={num_layers}.")
        return cls(layers=tuple(range(num_layers - k, num_layers)), **kwargs)

    def applies_to(self, layer_index: int, num_layers: int) -> bool:
        if self.drop_lowest >= num_layers:
            raise ValueError(f"AdapterConfig drop_lowest={self.drop_lowest} leaves no layer of a {num_layers}-layer "
                             "encoder adapted.")
        if layer_index < self.drop_lowest:
            return False
        if self.layers is None:
            return True
        bad = [i for i in self.layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"AdapterConfig layers {bad} do not exist in a {num_layers}-layer encoder.")
        return layer_index in self.layers

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        for key in ("layers", "sublayers", "lora_targets", "ia3_targets"):
            if values[key] is not None:
                values[key] = list(values[key])
        return values

    @classmethod
    def from_dict(cls, values):
        """An `AdapterConfig`, or an `AdapterComposition` for a dict of kind "stack" or "fuse" (what an encoder's
        `adapters` holds either way)."""
        if isinstance(values, (AdapterConfig, AdapterComposition, AdapterUnion)):
            return values
        if values.get("kind") in COMPOSITE_KINDS:
            return AdapterComposition.from_dict(values)
        if values.get("kind") == "union":
            return AdapterUnion.from_dict(values)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"AdapterConfig: unknown fields {sorted(unknown)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class AdapterUnion:
    """Several kinds of adaptation in one encoder, each wired where it belongs (AdapterHub's ConfigUnion): slot
    adapters in their slots, LoRA and (IA)^3 in the projections, prefixes in the attention, prompts in the input.

    Attributes:
        parts: `AdapterConfig`s of different kinds; at most one fills each slot (attention, ffn).
        name: what the union is called ("mam", "unipelt", or None), for reports.
        kind: "union".

    Presets: `AdapterUnion.mam(hidden_size)`, `AdapterUnion.unipelt(hidden_size)`.
    """

    parts: Tuple[AdapterConfig, ...]
    name: Optional[str] = None
    kind: str = "union"

    def __post_init__(self):
        parts = tuple(AdapterConfig.from_dict(part) for part in self.parts)
        object.__setattr__(self, "parts", parts)
        if self.kind != "union":
            raise ValueError(f"AdapterUnion kind={self.kind!r} must be 'union'.")
        if len(parts) < 2 or not all(isinstance(part, AdapterConfig) for part in parts):
            raise ValueError("An AdapterUnion joins at least two AdapterConfigs (compositions do not nest in it).")
        kinds = [part.kind for part in parts]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"An AdapterUnion holds each kind once: {kinds}.")
        for sublayer in ("attention", "ffn"):
            users = [part.kind for part in parts if part.kind in _SLOT_USERS and sublayer in part.sublayers]
            if len(users) > 1:
                raise ValueError(f"{' and '.join(users)} would both fill the {sublayer} slot; a union gives each slot "
                                 "one adapter (AdapterComposition stacks or fuses several).")
        if any(part.kind == "prefix" and part.prefix_projection for part in parts):
            raise ValueError("A union's prefix is trained directly (prefix_projection=0).")

    def part(self, kind: str) -> Optional[AdapterConfig]:
        """The part of that kind, or None."""
        return next((part for part in self.parts if part.kind == kind), None)

    @classmethod
    def mam(cls, hidden_size: int, prefix_length: int = 30, adapter_size: Optional[int] = None, scale: float = 4.0):
        """He et al. (2022)'s "mix-and-match" adapter: prefix tuning (P = 30) in the attention and a parallel adapter
        beside the FFN scaled by 4, of width hidden/2 (AdapterHub's MAMConfig: reduction factor 2). The prefixes
        train directly here (AdapterHub trains them through an MLP; the MLP did worse on SST-2-8k)."""
        return cls((AdapterConfig(kind="prefix", prefix_length=prefix_length),
                    AdapterConfig(kind="parallel", size=adapter_size or hidden_size // 2, scale=scale,
                                  sublayers=("ffn",))), name="mam")

    @classmethod
    def unipelt(cls, hidden_size: int, lora_rank: int = 8, prefix_length: int = 10, adapter_size: Optional[int] = None):
        """Mao et al. (2022)'s UniPELT, as AdapterHub's UniPELTConfig: gated LoRA (r = 8, on query and value), gated
        prefix tuning (P = 10, trained directly here) and a gated Pfeiffer adapter of width hidden/16; each gate
        learns per example how much of its module to use. LoRA's alpha is ours (16; AdapterHub's preset: 2)."""
        return cls((AdapterConfig(kind="lora", lora_rank=lora_rank, gated=True),
                    AdapterConfig(kind="prefix", prefix_length=prefix_length, gated=True),
                    AdapterConfig(kind="pfeiffer", size=adapter_size or hidden_size // 16, gated=True)),
                   name="unipelt")

    def to_dict(self) -> dict:
        return {"kind": "union", "name": self.name, "parts": [part.to_dict() for part in self.parts]}

    @classmethod
    def from_dict(cls, values) -> "AdapterUnion":
        if isinstance(values, AdapterUnion):
            return values
        unknown = set(values) - {"kind", "name", "parts"}
        if unknown:
            raise ValueError(f"AdapterUnion: unknown fields {sorted(unknown)}.")
        return cls(tuple(AdapterConfig.from_dict(part) for part in values["parts"]), values.get("name"))


def mergeable(config) -> bool:
    """Whether an encoder's `adapters` folds into the frozen kernels (`merge_adaptation`): LoRA or (IA)^3, ungated
    (a gated update depends on each input)."""
    return isinstance(config, AdapterConfig) and config.kind in MERGEABLE_KINDS and not config.gated


def parts_of(config):
    """The `AdapterConfig`s an encoder's `adapters` is made of: itself, a union's parts, none for a composition or
    None."""
    if isinstance(config, AdapterConfig):
        return (config,)
    if isinstance(config, AdapterUnion):
        return config.parts
    return ()


def adapted_layers(config, num_layers: int) -> set:
    """The indices of the transformer layers an encoder's `adapters` (a config, union or composition) adapts."""
    if isinstance(config, AdapterComposition):
        configs = [member for _, member in config.members]
    else:
        configs = parts_of(config)
    if any(c.kind == "prompt" for c in configs):
        return set(range(num_layers))  # its vectors go through every layer
    return {i for i in range(num_layers) if any(c.applies_to(i, num_layers) for c in configs)}


def part_of_kind(config, kind: str) -> Optional[AdapterConfig]:
    """The `AdapterConfig` of `kind` in an encoder's `adapters` (itself or a union's part), or None."""
    return next((part for part in parts_of(config) if part.kind == kind), None)


@dataclasses.dataclass(frozen=True)
class AdapterComposition:
    """Several named bottleneck adapters in the same slots of every block (layers/composite.py).

    Attributes:
        kind: "stack" (each adapter reads the previous one's output, in `members` order; AdapterHub's Stack) or
            "fuse" (every adapter reads the slot input; AdapterFusion combines their outputs, Pfeiffer et al. 2021).
        members: (name, AdapterConfig) pairs; names are their variables' path segments
            (`transformer_layer_0/output_adapter/<name>/down/kernel`); kinds from SLOT_KINDS. A fusion's members share
            their slots and layers.
        fusion_regularization: lambda of AdapterFusion's pull of its value matrix toward the identity,
            lambda ||I - W_V||^2 per fusion layer (AdapterHub's "dynamic" fusion: 0.01).

    Example:
        AdapterComposition("stack", (("domain", AdapterConfig("pfeiffer")), ("task", AdapterConfig("pfeiffer"))))
    """

    kind: str
    members: Tuple[Tuple[str, AdapterConfig], ...]
    fusion_regularization: float = 0.01

    def __post_init__(self):
        if self.kind not in COMPOSITE_KINDS:
            raise ValueError(f"AdapterComposition kind={self.kind!r}: choose one of {list(COMPOSITE_KINDS)}.")
        members = tuple((str(name), AdapterConfig.from_dict(config)) for name, config in self.members)
        object.__setattr__(self, "members", members)
        if not members:
            raise ValueError(f"An AdapterComposition ({self.kind}) needs at least one member.")
        names = [name for name, _ in members]
        for name in names:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name == "fusion":
                raise ValueError(f"Adapter name {name!r}: use letters, digits and '_' (starting with a letter), "
                                 "not 'fusion'.")
        if len(set(names)) != len(names):
            raise ValueError(f"Adapter names must be unique in a composition: {names}.")
        for name, config in members:
            if not isinstance(config, AdapterConfig) or config.kind not in SLOT_KINDS:
                raise ValueError(f"Adapter {name!r}: a composition holds bottleneck adapters ({', '.join(SLOT_KINDS)}), "
                                 f"not {getattr(config, 'kind', config)!r}.")
        if self.kind == "fuse":
            first = members[0][1]
            for name, config in members[1:]:
                if (config.sublayers, config.layers) != (first.sublayers, first.layers):
                    raise ValueError(f"Adapter {name!r} sits in other slots or layers than {members[0][0]!r}; a "
                                     "fusion combines adapters of the same places.")
        if not self.fusion_regularization >= 0:
            raise ValueError(f"fusion_regularization={self.fusion_regularization!r} must be >= 0.")

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(name for name, _ in self.members)

    def member(self, name: str) -> AdapterConfig:
        for member, config in self.members:
            if member == name:
                return config
        raise KeyError(f"No adapter {name!r} in this composition; it has {list(self.names)}.")

    def slot_members(self, sublayer: str, layer_index: int, num_layers: int):
        """The (name, config) pairs with an adapter in `sublayer` ("attention" or "ffn") of layer `layer_index`."""
        return [(name, config) for name, config in self.members
                if sublayer in config.sublayers and config.applies_to(layer_index, num_layers)]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "members": [[name, config.to_dict()] for name, config in self.members],
                "fusion_regularization": self.fusion_regularization}

    @classmethod
    def from_dict(cls, values) -> "AdapterComposition":
        if isinstance(values, AdapterComposition):
            return values
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"AdapterComposition: unknown fields {sorted(unknown)}.")
        members = tuple((name, AdapterConfig.from_dict(config)) for name, config in values["members"])
        return cls(values["kind"], members, values.get("fusion_regularization", 0.01))


# Variable paths that belong to an adaptation, not to the pretrained base: layers named *adapter*, *lora*, *ia3*,
# pal*, prefix*, phm* (Compacter's shared rule), soft_prompt.
ADAPTATION_PATH_PATTERN = r"(.*/)?(\w*adapter\w*|\w*lora\w*|\w*ia3\w*|pal\w*|prefix\w*|phm\w*|soft_prompt)/.*"


def is_adaptation_variable(path: str) -> bool:
    return re.fullmatch(ADAPTATION_PATH_PATTERN, path) is not None
