"""Which weights train: named strategies that freeze and unfreeze a task model's variables, and the report of
what will train.

    report = apply_strategy(model, "adapters")     # before compile()
    print(report)   # We will train 1.2e+06 parameters out of 2.3e+07, i.e. 5.21% ...

Freezing sets `variable.trainable = False`, so Keras computes no gradient for it and the optimizer creates no
slots for it. Apply a strategy before `compile()` (or compile again after changing it).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Dict

import numpy as np

from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.encoders.bert_encoder import find_encoder
from tfx_transfer.keras_compat import sublayers
from tfx_transfer.adaptation.members import member_variable
from tfx_transfer.layers.adapter_config import AdapterComposition, adapted_layers, is_adaptation_variable

STRATEGIES = ("full", "feature_extraction", "adapters", "top_k", "bitfit", "lora", "fusion")


def _encoder_of(model):
    return find_encoder(model)


def variable_group(path: str, encoder_paths) -> str:
    """The group a variable belongs to: adapters, head, embeddings, layer_norm, layer_<i>, pooler."""
    if is_adaptation_variable(path):
        return "adapters"
    if path not in encoder_paths:
        return "head"
    if "layer_norm" in path:
        return "layer_norm"
    if path.startswith("embeddings/"):
        return "embeddings"
    match = re.match(r"transformer_layer_(\d+)/", path)
    if match:
        return f"layer_{match.group(1)}"
    return path.split("/")[0]


def _size(variable) -> int:
    return int(np.prod(variable.shape)) if len(variable.shape) else 1


@dataclasses.dataclass
class ParameterReport:
    """Trainable vs total parameters, overall and per group (the seeds' hands-on print-out)."""

    strategy: str
    total: int
    trainable: int
    groups: Dict[str, Dict[str, int]]  # group -> {"total": n, "trainable": n}

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self):
        lines = [f"We will train {self.trainable:.1e} parameters out of {self.total:.1e}, i.e. "
                 f"{100 * self.fraction:.2f}% (strategy: {self.strategy})"]
        for group, counts in self.groups.items():
            lines.append(f"  {group:12s} {counts['trainable']:>12,} / {counts['total']:>12,} trainable")
        return "\n".join(lines)


def parameter_report(model, strategy: str = "current") -> ParameterReport:
    encoder_paths = set(model_variables(_encoder_of(model)))
    groups: Dict[str, Dict[str, int]] = {}
    total = trainable = 0
    for path, variable in model_variables(model).items():
        n = _size(variable)
        group = groups.setdefault(variable_group(path, encoder_paths), {"total": 0, "trainable": 0})
        group["total"] += n
        total += n
        if variable.trainable:
            group["trainable"] += n
            trainable += n
    order = ["embeddings"] + sorted((g for g in groups if re.fullmatch(r"layer_\d+", g)), key=lambda g: int(g[6:])) + \
        ["layer_norm", "pooler", "adapters", "head"]
    ordered = {g: groups[g] for g in order if g in groups}
    ordered.update({g: c for g, c in groups.items() if g not in ordered})
    return ParameterReport(strategy, total, trainable, ordered)


def _predicate(name: str, model, options) -> Callable[[str, str], bool]:
    """(path, group) -> trainable?"""
    encoder = _encoder_of(model)
    num_layers = encoder.bert_config.num_hidden_layers
    adapters = getattr(encoder, "adapters", None)
    # (IA)^3, prefix and prompt tuning train their own weights alone (Liu et al. 2022; Li & Liang 2021; Lester et al.
    # 2021; peft), and so do the adapters of a stack or fusion and unions such as MAM and UniPELT (AdapterHub: they
    # share the base as it is); the other kinds train the LayerNorms too by default.
    alone = ("ia3", "prefix", "prompt", "stack", "fuse", "union")
    train_layer_norms = options.pop("train_layer_norms", not (adapters is not None and adapters.kind in alone))
    train_pooler = options.pop("train_pooler", name == "full")
    if name == "full":
        return lambda path, group: True
    if name == "feature_extraction":
        return lambda path, group: group == "head" or (group == "pooler" and train_pooler)
    frozen = tuple(options.pop("frozen_adapters", ()))
    if name in ("adapters", "lora"):
        has_adaptation = any(is_adaptation_variable(v.path) for v in encoder.weights)
        if not has_adaptation:
            raise ValueError(f"Strategy {name!r} needs an encoder built with adapters=AdapterConfig(...); this "
                             "encoder has no adapter variables.")
        adapted = adapted_layers(adapters, num_layers)

        def adapted_norm(path):  # a LayerNorm of an adapted layer (the embeddings' when the first layer is one)
            match = re.match(r"transformer_layer_(\d+)/", path)
            return int(match.group(1)) in adapted if match else 0 in adapted

        unknown = sorted(set(frozen) - set(getattr(adapters, "names", ())))
        if unknown:
            raise ValueError(f"frozen_adapters {unknown}: the encoder's composition has no such adapters.")
        return lambda path, group: ((group == "adapters" and not any(member_variable(path, n) for n in frozen))
                                    or group == "head" or (group == "layer_norm" and train_layer_norms
                                                           and adapted_norm(path))
                                    or (group == "pooler" and train_pooler))
    if name == "fusion":
        if not (isinstance(adapters, AdapterComposition) and adapters.kind == "fuse"):
            raise ValueError("Strategy 'fusion' trains an AdapterFusion: the encoder needs adapters="
                             "AdapterComposition('fuse', ...).")
        return lambda path, group: group == "head" or re.fullmatch(r".*_adapter/fusion_\w+/.*", path) is not None
    if name == "top_k":
        k = options.pop("k", None)
        if not isinstance(k, int) or not 1 <= k <= num_layers:
            raise ValueError(f"Strategy 'top_k' needs k between 1 and {num_layers} (k={k!r}).")
        top = tuple(f"transformer_layer_{i}/" for i in range(num_layers - k, num_layers))
        return lambda path, group: path.startswith(top) or group in ("head", "pooler")
    if name == "bitfit":
        return lambda path, group: group == "head" or path.endswith("/bias") or path.endswith("/beta")
    raise ValueError(f"Unknown strategy {name!r}; choose one of {list(STRATEGIES)}.")


def apply_strategy(model, name: str, **options) -> ParameterReport:
    """Sets which variables of `model` (an encoder or a task model containing one) train.

    Strategies:
        full                 everything trains.
        feature_extraction   the encoder is frozen (pooler too unless train_pooler=True); the head trains.
        adapters / lora      the adaptation (adapters, LoRA matrices, (IA)^3 vectors, prefixes), LayerNorms
                             (train_layer_norms: True by default, as Houlsby et al. and adapter-bert; False as
                             AdapterHub, and the default for (IA)^3 and prefix tuning, whose papers train nothing
                             else; only those of adapted layers, and the embeddings' when the first is one, so that
                             with adapters in the top layers only (AdapterDrop) nothing below them trains) and the
                             head train; the rest is frozen. train_pooler=False by default. In a
                             composition, `frozen_adapters=(names)` keeps those members fixed (a stack's lower
                             adapters, MAD-X).
        fusion               an AdapterFusion's query, key and value matrices and the head; the fused adapters, the
                             LayerNorms and the rest stay fixed (Pfeiffer et al. 2021).
        top_k                the top `k` transformer layers (everything in them), the pooler and the head.
        bitfit               bias terms only (Ben Zaken et al. 2022), LayerNorm betas included, plus the head.

    Returns:
        ParameterReport. Raises ValueError for an unknown strategy or missing options.
    """
    options = dict(options)
    keep = _predicate(name, model, options)
    if options:
        raise ValueError(f"Strategy {name!r} got unknown options {sorted(options)}.")
    encoder_paths = set(model_variables(_encoder_of(model)))
    model.trainable = True
    for layer in sublayers(model):
        layer.trainable = True
    for path, variable in model_variables(model).items():
        variable.trainable = bool(keep(path, variable_group(path, encoder_paths)))
    return parameter_report(model, name)

