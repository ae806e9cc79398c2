"""Wiring an `AdapterConfig` into the transformer blocks of a `BertEncoder`."""

from __future__ import annotations

from typing import Dict

from tfx_transfer.layers.adapter_config import AdapterComposition, AdapterConfig, AdapterUnion, part_of_kind
from tfx_transfer.layers.adapters import BottleneckAdapter, PalProjections, ProjectedAttentionAdapter
from tfx_transfer.layers.composite import AdapterFusion, AdapterStack
from tfx_transfer.layers.phm import PhmRule
from tfx_transfer.layers.attention import MultiHeadSelfAttention
from tfx_transfer.layers.prefix import PrefixEncoder
from tfx_transfer.layers.prompt import SoftPrompt


def shared_adaptation_layers(config: AdapterConfig, hidden_size: int, dtype=None) -> Dict[str, object]:
    """Layers shared by all blocks (PAL projections, and PAL attention with pal_share='all'; Compacter's PHM rules),
    built here so their variable paths are top-level (`pal_projections/...`, `pal_attention/...`, `phm_rule/rule`)."""
    if isinstance(config, AdapterUnion):
        return {key: layer for part in config.parts for key, layer in shared_adaptation_layers(part, hidden_size,
                                                                                               dtype).items()}
    shared = {}
    if config.kind == "compacter":  # the rules A_i of every PHM projection
        rule = PhmRule(config.phm_dim, name="phm_rule", dtype=dtype)
        rule.build()
        shared["phm_rule"] = rule
    if config.kind == "pal" and config.pal_share in ("projections", "all"):
        projections = PalProjections(config.size, config.init_stddev, config.zero_init_up, name="pal_projections",
                                     dtype=dtype)
        projections.build((None, None, hidden_size))
        shared["projections"] = projections
        if config.pal_share == "all":
            attention = MultiHeadSelfAttention(config.pal_heads, dropout_rate=0.0, initializer_range=config.init_stddev,
                                               name="pal_attention", dtype=dtype)
            attention.build((None, None, config.size))
            shared["attention"] = attention
    return shared


def block_adaptation_kwargs(config: AdapterConfig, index: int, num_layers: int, shared: Dict[str, object],
                            dtype=None) -> dict:
    """Keyword arguments for `TransformerBlock` number `index` (empty when the layer gets no adaptation)."""
    if isinstance(config, AdapterComposition):
        return _composite_slots(config, index, num_layers, dtype)
    if isinstance(config, AdapterUnion):  # each part's arguments (the union checked they do not overlap)
        kwargs = {}
        for part in config.parts:
            kwargs.update(block_adaptation_kwargs(part, index, num_layers, shared, dtype))
        return kwargs
    if not config.applies_to(index, num_layers):
        return {}
    if config.kind == "lora":
        return dict(lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                    lora_targets=config.lora_targets, lora_gated=config.gated)
    if config.kind == "prefix":
        return {"prefix_gated": True} if config.gated else {}
    if config.kind == "ia3":
        return dict(ia3_targets=config.ia3_targets)
    if config.kind == "pal":
        return {"attention_adapter": ProjectedAttentionAdapter(
            config.size, config.pal_heads, projections=shared.get("projections"), attention=shared.get("attention"),
            init_stddev=config.init_stddev, zero_init_up=config.zero_init_up, name="attention_adapter", dtype=dtype)}
    return {slot: _bottleneck(config, slot, dtype, shared.get("phm_rule")) for sublayer, slot in SLOTS
            if sublayer in config.sublayers}


SLOTS = (("attention", "attention_adapter"), ("ffn", "output_adapter"))  # (sublayer, TransformerBlock slot)


def _bottleneck(config: AdapterConfig, name: str, dtype=None, phm_rule=None) -> BottleneckAdapter:
    parallel = config.kind == "parallel"
    zero_init_up = config.zero_init_up or config.kind == "compacter"  # layers/phm.py: why Compacter starts so
    return BottleneckAdapter(config.size, config.activation, config.init_stddev, zero_init_up,
                             parallel=parallel, scale=config.scale if parallel else 1.0, phm_rule=phm_rule,
                             phm_rank=config.phm_rank, gated=config.gated, name=name, dtype=dtype)


def _composite_slots(config: AdapterComposition, index: int, num_layers: int, dtype=None) -> dict:
    """Each slot holding at least one member: an `AdapterStack` or `AdapterFusion` of its members, named after them."""
    kwargs = {}
    for sublayer, slot in SLOTS:
        members = [_bottleneck(member, name, dtype) for name, member in config.slot_members(sublayer, index, num_layers)]
        if not members:
            continue
        if config.kind == "stack":
            kwargs[slot] = AdapterStack(members, name=slot, dtype=dtype)
        else:
            kwargs[slot] = AdapterFusion(members, regularization=config.fusion_regularization, name=slot, dtype=dtype)
    return kwargs


def prefix_layers(config: AdapterConfig, num_layers: int, hidden_size: int, initializer_range: float, dtype=None):
    """For prefix tuning (alone or in a union): (the `PrefixEncoder` named `prefix_encoder`, {layer index: its row in
    the prefixes}); (None, {}) for other kinds."""
    config = part_of_kind(config, "prefix")
    if config is None:
        return None, {}
    adapted = [i for i in range(num_layers) if config.applies_to(i, num_layers)]
    encoder = PrefixEncoder(config.prefix_length, len(adapted), hidden_size, config.prefix_projection,
                            init_stddev=initializer_range, name="prefix_encoder", dtype=dtype)
    return encoder, {index: row for row, index in enumerate(adapted)}


def prompt_layer(config, dtype=None):
    """For prompt tuning (alone or in a union): the `SoftPrompt` named `soft_prompt` (P vectors after [CLS]); None
    for other kinds."""
    config = part_of_kind(config, "prompt")
    if config is None:
        return None
    return SoftPrompt(config.prompt_length, name="soft_prompt", dtype=dtype)
