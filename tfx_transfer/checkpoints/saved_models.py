"""What a SavedModel holds, read once: weights by name, vocabulary, casing, bookkeeping.

Three producers' SavedModels are BERT encoders:
  Model Garden `export_tfhub` (the tfhub.dev `bert_en_*` encoders)  variables named `transformer/layer_N/...`; an
        unnamed boolean variable (`Variable:0`) that is the module's `do_lower_case`; `vocab_file` asset
  TF1 Hub format (`hub.Module`, e.g. tfhub.dev/google/bert_uncased_L-12_H-768_A-12/1)  google-research/bert names
        (`bert/encoder/layer_N/...`); vocabulary and casing from its `tokenization_info` signature
  tfx_transfer `hub_modules.export_encoder`  `tfx_variable_paths` gives each variable's path in `BertEncoder`;
        `assets.extra/config.json`
Bookkeeping variables (`do_lower_case`, `tfx_variable_paths`) are told apart by identity with the module's
attributes, never by name, and are not weights.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np

from tfx_transfer.encoders.hub_encoder import load_module


@dataclasses.dataclass(frozen=True)
class SavedModelContents:
    """A loaded SavedModel's weights and text settings.

    Attributes:
        path: the SavedModel directory.
        arrays: {variable name without ':0' (or tfx_transfer path): value} of the weights.
        bookkeeping: names of variables that are not weights, with what they are.
        tfx_paths: the names are tfx_transfer variable paths (our exporter).
        vocab_file, do_lower_case: the module's vocabulary asset and casing (None when it records none).
        config: assets.extra/config.json (our exporter), or None.
        interface: "tf2" (callable encoder), "tf1_hub" (a `tokens` signature) or "other".
        module: the loaded object (`hub.load`), e.g. to call a TF1 module's signatures.
    """

    path: str
    arrays: Dict[str, np.ndarray]
    bookkeeping: Tuple[Tuple[str, str], ...]
    tfx_paths: bool
    vocab_file: Optional[str]
    do_lower_case: Optional[bool]
    config: Optional[dict]
    interface: str
    module: object = dataclasses.field(default=None, compare=False, repr=False)


def _name(variable) -> str:
    name = variable.name
    return name[:-2] if name.endswith(":0") else name


def _tf1_asset(path: str, signature: str, output: str) -> Optional[str]:
    """The asset file a TF1 SavedModel signature output stands for. TF1 graphs hold a placeholder string
    ("SAVEDMODEL-ASSET") where the asset's path goes; the `saved_model_assets` collection maps the tensor to the
    file under assets/, and TF2 loading does not substitute it in signature outputs."""
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if signature not in meta_graph.signature_def or output not in meta_graph.signature_def[signature].outputs:
            continue
        tensor = meta_graph.signature_def[signature].outputs[output].name
        for packed in meta_graph.collection_def["saved_model_assets"].any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            packed.Unpack(asset)
            if asset.tensor_info.name == tensor:
                return os.path.join(path, "assets", asset.filename)
    return None


def _tf1_tokenization_info(module, path: str):
    """(vocab_file, do_lower_case) from a TF1 Hub module's `tokenization_info` signature, or (None, None)."""
    signature = (getattr(module, "signatures", None) or {}).get("tokenization_info")
    if signature is None:
        return None, None
    info = signature()
    vocab = info.get("vocab_file")
    lower = info.get("do_lower_case")
    vocab_file = vocab.numpy().decode() if vocab is not None else None
    if vocab_file is not None and not os.path.isfile(vocab_file):
        vocab_file = _tf1_asset(path, "tokenization_info", "vocab_file")
    return vocab_file, bool(lower.numpy()) if lower is not None else None


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> SavedModelContents:
    import tensorflow as tf

    module = load_module(path)
    variables = getattr(module, "variables", None)  # Reusable SavedModels (TF Hub) and TF1 modules list them
    if variables is None:
        variables = [t for t in tf.train.TrackableView(module).descendants() if isinstance(t, tf.Variable)]
    special = {}
    for attribute in ("do_lower_case", "tfx_variable_paths"):
        value = getattr(module, attribute, None)
        if isinstance(value, tf.Variable):
            special[id(value)] = attribute
    tfx_names = ([p.decode() for p in module.tfx_variable_paths.numpy()]
                 if "tfx_variable_paths" in special.values() else None)
    weights, bookkeeping, seen = [], [], set()
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            if id(variable) in special:
                bookkeeping.append((_name(variable), special[id(variable)]))
            else:
                weights.append(variable)
    if tfx_names is not None and len(tfx_names) != len(weights):
        raise ValueError(f"{path}: tfx_variable_paths names {len(tfx_names)} variables but the module has "
                         f"{len(weights)}; the export is damaged.")
    arrays = {}
    for index, variable in enumerate(weights):
        name = tfx_names[index] if tfx_names is not None else _name(variable)
        if name in arrays:
            raise ValueError(f"{path}: two SavedModel variables are named {name!r}; cannot map them by name.")
        arrays[name] = variable.numpy()
    vocab_file = module.vocab_file.asset_path.numpy().decode() if hasattr(module, "vocab_file") else None
    lower = bool(module.do_lower_case.numpy()) if hasattr(module, "do_lower_case") else None
    interface = "tf2" if callable(module) else "other"
    if "tokens" in (getattr(module, "signatures", None) or {}):
        interface = "tf1_hub" if not callable(module) else interface
        tf1_vocab, tf1_lower = _tf1_tokenization_info(module, path)
        vocab_file, lower = vocab_file or tf1_vocab, lower if lower is not None else tf1_lower
    config_file = os.path.join(path, "assets.extra", "config.json")
    config = None
    if os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
    return SavedModelContents(path, arrays, tuple(bookkeeping), tfx_names is not None, vocab_file, lower, config,
                              interface, module)


def read_saved_model(path) -> SavedModelContents:
    """Loads the SavedModel at `path` once per process (cached on its path and modification time).

    Raises:
        ValueError: not a loadable SavedModel, or its variables cannot be told apart by name.
    """
    path = os.path.abspath(os.fspath(path))
    graph = os.path.join(path, "saved_model.pb")
    return _read(path, os.path.getmtime(graph) if os.path.isfile(graph) else 0.0)  # load_module explains a non-SavedModel


def adopt_module(path):
    """The module `read_saved_model(path)` loaded, handed over to one owner (e.g. the job's black-box HubEncoder,
    which trains its variables): the cache forgets it, so a later read loads the SavedModel afresh."""
    module = read_saved_model(path).module
    _read.cache_clear()
    return module
