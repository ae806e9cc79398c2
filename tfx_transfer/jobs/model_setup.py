"""From options to a model: where the pretrained weights, config, vocabulary and casing come from (one resolver,
`tfx_transfer.pretrained`), the adapter configuration, the encoder, and its initial weights. Shared by
run_classifier.py and run_squad.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional, Tuple

import numpy as np
from absl import logging

from tfx_transfer.adaptation.strategies import apply_strategy
from tfx_transfer.checkpoints.assignment_map import AssignmentMap
from tfx_transfer.checkpoints.loader import load_checkpoint
from tfx_transfer.checkpoints.saved_models import adopt_module, read_saved_model
from tfx_transfer.config import BertConfig
from tfx_transfer.encoders.bert_encoder import BertEncoder
from tfx_transfer.encoders.hub_encoder import HubEncoder, describe_interface, legacy_signature
from tfx_transfer.jobs.adapter_setup import adapter_config, load_composed_members, strategy_arguments
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import DistributionOptions, ModelOptions
from tfx_transfer.layers.adapter_config import ADAPTATION_PATH_PATTERN
from tfx_transfer.layers.prompt import prompts_from_vocabulary
from tfx_transfer.pretrained import DEFAULT_MODEL, hub_module_path, resolve_pretrained
from tfx_transfer.text.casing import case_mismatch
from tfx_transfer.text.tokenizer_files import TokenizerSettings
from tfx_transfer.text.vocab import load_vocab


@dataclasses.dataclass
class ModelSource:
    """What the task model is initialised from. `hub_handle` is set for TF Hub modules (weights inside);
    `labels`: the checkpoint's head labels when its producer recorded them (Hugging Face id2label, a finished
    run's task.json)."""

    config: Optional[BertConfig]
    weights_path: str
    tokenizer: TokenizerSettings
    description: str
    hub_handle: Optional[str] = None
    labels: Optional[Tuple[str, ...]] = None

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings if self.config else 512


def _hub_source(options: ModelOptions) -> ModelSource:
    """--hub_module_handle: a SavedModel with a BERT encoder interface. Its architecture is read when it is one we
    can unwrap (Model Garden, TF1 Hub, our exports); otherwise it can still run as a black box."""
    handle = options.hub_module_handle
    try:
        path = hub_module_path(handle)
        contents = read_saved_model(path)
        legacy_signature(contents.module, handle)  # raises for a SavedModel that is not a BERT encoder
    except ValueError as e:
        raise FlagError(f"--hub_module_handle={handle}: {e}") from e
    if contents.vocab_file is None:
        raise FlagError(f"--hub_module_handle={handle}: the module has no vocab_file asset, so its tokenisation is "
                        f"unknown; it offers {describe_interface(contents.module)}.")
    try:
        files = resolve_pretrained(path, vocab_file=options.vocab_file, do_lower_case=options.do_lower_case)
        config, tokenizer = files.config, files.tokenizer
    except ValueError:  # a black box of unknown layout: usable, but not unwrappable
        config = None
        lower = options.do_lower_case
        if lower is None:
            lower = contents.do_lower_case if contents.do_lower_case is not None else True
        tokenizer = TokenizerSettings(contents.vocab_file, lower, source=f"{path} (Hub module)")
    return ModelSource(config, path, tokenizer, f"--hub_module_handle={handle}", hub_handle=path)


def resolve_model_source(options: ModelOptions) -> ModelSource:
    """--hub_module_handle, --init_checkpoint (+ --bert_config_file, --vocab_file) or --pretrained (default: the
    packaged MiniLM), in any layout `tfx_transfer.pretrained` reads."""
    named = [f for f in ("hub_module_handle", "init_checkpoint", "pretrained") if getattr(options, f)]
    if len(named) > 1:
        raise FlagError(f"{' and '.join('--' + f for f in named)} all name the initial model; pass only one.")
    if options.hub_module_handle:
        return _hub_source(options)
    name = options.init_checkpoint or options.pretrained or DEFAULT_MODEL
    flag = "--init_checkpoint" if options.init_checkpoint else "--pretrained"
    for given, what in ((options.bert_config_file, "--bert_config_file"), (options.vocab_file, "--vocab_file")):
        if given and not os.path.isfile(given):
            raise FlagError(f"{what}={given}: file not found.")
    try:
        files = resolve_pretrained(name, config_file=options.bert_config_file, vocab_file=options.vocab_file,
                                   do_lower_case=options.do_lower_case)
    except (FileNotFoundError, ValueError) as e:
        hint = ""
        if "no config file" in str(e) or "no vocabulary" in str(e):
            hint = " Pass --bert_config_file and --vocab_file for a directory that holds only checkpoints."
        raise FlagError(f"{flag}={name}: {e}{hint}") from e
    if options.do_lower_case is not None:
        problem = case_mismatch(files.do_lower_case, load_vocab(files.vocab_file), files.weights_path)
        if problem:
            raise FlagError(f"--do_lower_case={files.do_lower_case}: {problem}")
    tokenizer = files.tokenizer
    logging.info("Tokenizer from %s: lower case %s, strip accents %s, words of up to %d characters.",
                 tokenizer.source, tokenizer.do_lower_case,
                 tokenizer.do_lower_case if tokenizer.strip_accents is None else tokenizer.strip_accents,
                 tokenizer.max_chars_per_word)
    return ModelSource(files.config, files.weights_path, tokenizer, f"{flag}={name}", labels=files.labels)


def build_encoder(source: ModelSource, options: ModelOptions, distribution: DistributionOptions,
                  needs_layers: bool = False):
    """The encoder for `source`: a from-scratch `BertEncoder` (weights loaded later by `load_initial_weights`), a
    black-box `HubEncoder` (--adaptation full or feature_extraction), or a Hub module unwrapped by `from_hub`.
    `needs_layers`: the task model reads the encoder's own layers (the probes' embeddings, the masked-LM head's tied
    word embeddings), so a Hub module is always unwrapped."""
    adapters = adapter_config(options, source.config.hidden_size if source.config else None)
    if not source.hub_handle:
        return BertEncoder.from_bert_config(source.config, adapters=adapters)
    # A black-box module's variables are created by hub.load, outside any strategy scope: under a multi-replica
    # strategy the module is unwrapped instead (identical outputs, variables created by the strategy).
    if options.adaptation in ("full", "feature_extraction") and adapters is None and not distribution.multi_replica \
            and not needs_layers:
        return HubEncoder(source.hub_handle, trainable=options.adaptation == "full",
                          module=adopt_module(source.hub_handle))  # loaded once, by _hub_source
    encoder = BertEncoder.from_hub(source.hub_handle, adapters=adapters)
    logging.info("Unwrapped the Hub module into a transparent encoder:\n%s", encoder.load_report)
    return encoder


def head_dropout(source: ModelSource) -> float:
    """Dropout before a task head: the encoder's hidden dropout (0.1 for BERT), as Hugging Face's BertFor* heads."""
    return source.config.hidden_dropout_prob if source.config else 0.1


def prepare_model(model, source: ModelSource, options: ModelOptions, will_train: bool, task_name=None):
    """Loads the initial weights (unless they came with a Hub module) and applies the --adaptation strategy.
    `task_name`: the job's task; a previous run of another task (sequential adaptation) gives the encoder only.
    Returns the load report (None for a Hub module, whose weights came with it)."""
    report = load_initial_weights(model, source, options, will_train, task_name) if not source.hub_handle else None
    if options.stack_adapters or options.fuse_adapters:
        load_composed_members(model, options)
    initialise_new_prompts(model, report)
    if isinstance(model.encoder, HubEncoder):
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        total = sum(int(np.prod(v.shape)) for v in model.weights)
        logging.info("Black-box Hub encoder (%s): training %d of %d parameters.",
                     "fine-tuned" if model.encoder.trainable else "frozen", trainable, total)
        return report
    logging.info("%s", apply_strategy(model, options.adaptation, **strategy_arguments(options)))
    return report


def initialise_new_prompts(model, report, seed: int = 0):
    """Prompt tuning: prompts the checkpoint did not provide start from sampled vocabulary embeddings (Lester et al.'s
    better initialisation), now that the pretrained embeddings are loaded."""
    encoder = model.encoder
    if getattr(getattr(encoder, "adapters", None), "kind", None) != "prompt":
        return
    if report is not None and not any(item.name.startswith("soft_prompt/") for item in report.newly_initialized):
        return  # a finished run's prompts
    ids = prompts_from_vocabulary(encoder, seed)
    logging.info("Prompt tuning: %d prompts from the embeddings of vocabulary ids %s.", len(ids), list(ids))


def previous_task(weights_path: str) -> Optional[str]:
    """The task of a finished run's `final/` directory (its task.json), or None for other checkpoints."""
    for directory in (weights_path, os.path.dirname(weights_path)):
        path = os.path.join(directory, "task.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f).get("task")
    return None


def head_loaded(model, report) -> bool:
    """Whether `report` initialised every variable of `model`'s head from the checkpoint."""
    head = [v.path for v in model.weights if any(re.fullmatch(p, v.path) for p in model.head_patterns)]
    loaded = {item.target for item in report.loaded}
    return bool(head) and all(path in loaded for path in head)


def load_initial_weights(model, source: ModelSource, options: ModelOptions, will_train: bool, task_name=None):
    """Loads `source` into the task model; adapters and the task head may stay newly initialised. A fine-tuned
    checkpoint's head loads when it is the model's kind of head with the same shape (a producer's classifier
    with as many labels, a QA head), else it is reported as discarded. A previous run of another task (sequential
    adaptation, Phang et al. 2018) loads its encoder; its head is discarded."""
    head_patterns = list(model.head_patterns)
    user_map = AssignmentMap.from_json_file(options.assignment_map) if options.assignment_map else None
    earlier = previous_task(source.weights_path)
    if task_name and earlier and earlier != task_name and head_patterns:
        logging.info("Sequential adaptation: %s is a %s run; its encoder is loaded, its head is not (a new %s head).",
                     source.weights_path, earlier, task_name)
        new_head = AssignmentMap(discard=head_patterns, name=f"new {task_name} head")
        user_map = new_head if user_map is None else new_head.then(user_map)
    report = load_checkpoint(model, source.weights_path, assignment_map=user_map,
                             allow_missing=[ADAPTATION_PATH_PATTERN, *head_patterns],
                             heads=model.loads_producer_heads)
    logging.info("Initialised from %s\n%s", source.description, report)
    if head_patterns and head_loaded(model, report):
        logging.info("The task head comes from the checkpoint (%s).", source.description)
    elif head_patterns:
        notes = sorted({u.note for u in report.unused_in_checkpoint if u.note})
        if not will_train:
            logging.warning("The task head is newly initialised (%s) and --do_train is off: evaluation, predictions "
                            "and exports will come from an untrained head.",
                            "; ".join(notes) if notes else "the checkpoint has none")
        elif notes:
            logging.info("The checkpoint's task head is not used: %s.", "; ".join(notes))
    return report


def freeze_unused_pooler(model):
    """For task models that read the sequence output (tagging, masked LM): the encoder's pooler gets no gradient
    (Keras warns about it when the step is traced), so it is frozen, and the model card counts it as such."""
    get_layer = getattr(model.encoder, "get_layer", None)
    try:
        pooler = get_layer("pooler") if get_layer else None
    except ValueError:  # an encoder without one (a Hub module)
        pooler = None
    if pooler is not None:
        pooler.trainable = False
