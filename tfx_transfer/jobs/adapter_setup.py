"""Which adapters a job's encoder gets, from its flags: one `AdapterConfig` (--adaptation, --adapter_kind,
--adapter_size, --lora_rank, --prefix_*), or an `AdapterComposition` of trained adapters read from files
(--stack_adapters: frozen adapters under the new one, MAD-X; --fuse_adapters: AdapterFusion over them), loaded into
their places once the base weights are in; and the strategy's arguments (--top_k, --train_layer_norms, the frozen
members). Every adapter file is resolved, read and checked before the model is built."""

from __future__ import annotations

import json
import os
from typing import Optional

from absl import logging

from tfx_transfer.adaptation.files import assign_arrays, check_base, read_adaptation
from tfx_transfer.adaptation.members import member_arrays
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import ModelOptions
from tfx_transfer.layers.adapter_config import PRESETS, SLOT_KINDS, AdapterComposition, AdapterConfig, AdapterUnion

ADAPTER_FILE = "adapter.safetensors"


def named_adapter_files(specs, flag: str):
    """NAME:PATH pairs of a flag (--stack_adapters, --fuse_adapters, --export_tasks), each PATH resolved to its
    adaptation file: PATH itself, PATH/adapter.safetensors or PATH/final/adapter.safetensors. Returns [(name, file)].

    Raises:
        FlagError: a pair that is not NAME:PATH, a repeated name, or a PATH with no adaptation file (a fully
            fine-tuned run is named as such).
    """
    pairs = []
    for spec in specs:
        name, colon, path = spec.partition(":")
        name, path = name.strip(), path.strip()
        if not colon or not name or not path:
            raise FlagError(f"{flag}: {spec!r} is not NAME:PATH (e.g. sst2:runs/sst2).")
        if name in [n for n, _ in pairs]:
            raise FlagError(f"{flag}: the name {name!r} is given twice.")
        pairs.append((name, _adapter_file(flag, name, path)))
    return pairs


def _adapter_file(flag: str, name: str, path: str) -> str:
    for candidate in (path, os.path.join(path, ADAPTER_FILE), os.path.join(path, "final", ADAPTER_FILE)):
        if os.path.isfile(candidate):
            return candidate
    for final in (path, os.path.join(path, "final")):
        if os.path.isfile(os.path.join(final, "model.keras")):
            task = os.path.join(final, "task.json")
            adaptation = "full"
            if os.path.isfile(task):
                with open(task, encoding="utf-8") as f:
                    adaptation = json.load(f).get("adaptation", adaptation)
            raise FlagError(f"{flag}={name}:{path}: {final} holds a whole model (trained with --adaptation="
                            f"{adaptation}), not an adaptation of the base; only runs trained with --adaptation="
                            "adapters or lora wrote one (final/adapter.safetensors).")
    raise FlagError(f"{flag}={name}:{path}: no {ADAPTER_FILE} there, in it, or in its final/.")


def composed_members(options: ModelOptions):
    """(flag, [(name, adapter file, metadata, member arrays)]) of --stack_adapters or --fuse_adapters (each file
    read and checked for being a bottleneck adapter that shares the base as it is); (None, []) without them."""
    flag, specs = (("--fuse_adapters", options.fuse_adapters) if options.fuse_adapters else
                   ("--stack_adapters", options.stack_adapters))
    members = []
    for name, path in named_adapter_files(specs or (), flag):
        try:
            metadata, arrays = read_adaptation(path)
            members.append((name, path, metadata, member_arrays(name, metadata, arrays, f"{flag}={name}:{path}")))
        except ValueError as e:
            raise FlagError(str(e) if str(e).startswith(flag) else f"{flag}={name}:{path}: {e}") from e
    return (flag if specs else None), members


def adapter_config(options: ModelOptions, hidden_size: Optional[int] = None):
    """The `AdapterConfig` of --adaptation / --adapter_kind / --adapter_size / --lora_rank / --prefix_*, the
    `AdapterUnion` of a preset (--adapter_kind=mam / unipelt; `hidden_size` sizes its adapter), the
    `AdapterComposition` of --fuse_adapters / --stack_adapters (with the new adapter on top), or None."""
    if options.stack_adapters and options.fuse_adapters:
        raise FlagError("--stack_adapters and --fuse_adapters: choose one composition.")
    if (options.adaptation == "fusion") != bool(options.fuse_adapters):
        raise FlagError("--adaptation=fusion and --fuse_adapters=NAME:PATH,... go together (AdapterFusion trains over "
                        "the adapters it fuses).")
    flag, members = composed_members(options)
    if options.fuse_adapters:
        return _composition("fuse", [(n, AdapterConfig.from_dict(m["adapters"])) for n, _, m, _ in members], flag)
    if options.adapter_kind in PRESETS:
        if options.adaptation != "adapters":
            raise FlagError(f"--adapter_kind={options.adapter_kind} goes with --adaptation=adapters.")
        return getattr(AdapterUnion, options.adapter_kind)(hidden_size or 768)
    config = _single_adapter_config(options)
    if options.stack_adapters:
        if config is None or config.kind not in SLOT_KINDS:
            got = config.kind if config else f"--adaptation={options.adaptation}"
            raise FlagError(f"--stack_adapters puts a new bottleneck adapter over trained ones: use --adaptation="
                            f"adapters with --adapter_kind={' / '.join(SLOT_KINDS)} (got {got}).")
        if "task" in [name for name, *_ in members]:
            raise FlagError("--stack_adapters: 'task' names the new adapter on top; give the stacked ones other names.")
        return _composition("stack", [(n, AdapterConfig.from_dict(m["adapters"])) for n, _, m, _ in members] +
                            [("task", config)], flag)
    return config


def _composition(kind, members, flag):
    try:
        return AdapterComposition(kind, tuple(members))
    except ValueError as e:
        raise FlagError(f"{flag}: {e}") from e


def _single_adapter_config(options: ModelOptions) -> Optional[AdapterConfig]:
    kind = options.adapter_kind
    if options.adaptation == "adapters":
        kind = kind or "houlsby"
        if kind == "lora":
            raise FlagError("--adapter_kind=lora goes with --adaptation=lora.")
    elif options.adaptation == "lora":
        if kind not in (None, "lora"):
            raise FlagError(f"--adaptation=lora with --adapter_kind={kind}: use --adaptation=adapters for {kind}.")
        kind = "lora"
    if kind is None:
        return None
    if options.adapter_size < 1:
        raise FlagError(f"--adapter_size={options.adapter_size} must be >= 1.")
    if not options.adapter_init_stddev > 0:
        raise FlagError(f"--adapter_init_stddev={options.adapter_init_stddev} must be > 0.")
    if kind == "prompt" and options.prompt_length < 1:
        raise FlagError(f"--prompt_length={options.prompt_length} must be >= 1.")
    fields = {"lora": dict(lora_rank=options.lora_rank, lora_alpha=2.0 * options.lora_rank),
              "prefix": dict(prefix_length=options.prefix_length, prefix_projection=options.prefix_projection),
              "prompt": dict(prompt_length=options.prompt_length),
              "ia3": dict(ia3_targets=options.ia3_targets) if options.ia3_targets else {},
              "compacter": dict(size=options.adapter_size, phm_dim=options.phm_dim, phm_rank=options.phm_rank),
              }.get(kind, dict(size=options.adapter_size, init_stddev=options.adapter_init_stddev))
    if options.adapter_drop:
        fields["drop_lowest"] = options.adapter_drop
    try:
        return AdapterConfig(kind=kind, **fields)
    except ValueError as e:
        named = ("adapter_kind", *_FLAGS.get(kind, ()), *(("adapter_drop",) if options.adapter_drop else ()))
        given = ", ".join(f"--{flag}" for flag in named)
        raise FlagError(f"{given}: {e}") from e


_FLAGS = {"prefix": ("prefix_length", "prefix_projection"), "prompt": ("prompt_length",), "ia3": ("ia3_targets",),
          "compacter": ("adapter_size", "phm_dim", "phm_rank"), "lora": ("lora_rank",)}


def strategy_arguments(options: ModelOptions) -> dict:
    """Keyword arguments of `apply_strategy` for --adaptation (--top_k, --train_layer_norms, the stacked adapters
    kept frozen)."""
    if options.adaptation == "top_k":
        return {"k": options.top_k}
    arguments = {}
    if options.adaptation in ("adapters", "lora") and options.train_layer_norms is not None:
        arguments["train_layer_norms"] = options.train_layer_norms
    if options.stack_adapters:
        arguments["frozen_adapters"] = [name for name, _ in named_adapter_files(options.stack_adapters,
                                                                                 "--stack_adapters")]
    return arguments


def load_composed_members(model, options: ModelOptions):
    """Assigns the adapters --stack_adapters / --fuse_adapters name to their places in `model`'s encoder, after each
    file is checked against the base weights loaded there."""
    flag, members = composed_members(options)
    encoder = model.encoder
    for name, path, metadata, arrays in members:
        try:
            check_base(encoder, metadata, f"{flag}={name}:{path}")
            assign_arrays(encoder, arrays, f"{flag}={name}:{path}")
        except ValueError as e:
            raise FlagError(str(e)) from e
        logging.info("%s: adapter %r from %s (%d arrays).", flag, name, path, len(arrays))
