"""Convert a BERT between checkpoint formats.

    python -m tfx_transfer.jobs.convert --input=<dir|prefix|all-MiniLM-L6-v2> \\
        --output_dir=<dir> --output_format={google,hf,keras}

Reads anything `BertEncoder.from_pretrained` reads (Hugging Face, Google TF1, Model Garden, keras-hub presets, Keras,
TF Hub SavedModels), prints one line per stage and the load report, writes the output directory atomically (an
existing non-empty directory is refused unless --overwrite), then reloads what it wrote and checks the outputs are
identical. Pretraining heads travel with the encoder (--pretraining_heads, default on): a masked-LM head (a
run_pretraining.py final/, google-research/bert's cls/predictions, transformers' BertForMaskedLM / BertForPreTraining,
Model Garden's BertPretrainerV2) and BERT's next-sentence head are written in the output format's names
(google: cls/predictions/*, cls/seq_relationship/*; hf: BertForMaskedLM / BertForPreTraining), and checked too.
Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from tfx_transfer.checkpoints.assignment_map import AssignmentMap  # noqa: E402
from tfx_transfer.checkpoints.writers import WRITERS  # noqa: E402
from tfx_transfer.checkpoints.loader import load_checkpoint  # noqa: E402
from tfx_transfer.encoders.bert_encoder import BertEncoder  # noqa: E402
from tfx_transfer.jobs.model_setup import head_loaded  # noqa: E402
from tfx_transfer.models.masked_lm import BertMaskedLM  # noqa: E402
from tfx_transfer.text import BertPreprocessor  # noqa: E402

# A private flag registry: importing this module never clashes with the scripts' absl flags.
FLAGS = flags.FlagValues()
flags.DEFINE_string("input", None, "Model directory, TF checkpoint prefix or packaged model name.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None, "Directory to write (atomically).", flag_values=FLAGS)
flags.DEFINE_enum("output_format", "hf", ["google", "hf", "keras"],
                  "google: bert_model.ckpt + bert_config.json; hf: model.safetensors + config.json; keras: model.keras.",
                  flag_values=FLAGS)
flags.DEFINE_string("assignment_map", None, "JSON assignment map applied before the input format's built-in rules.",
                    flag_values=FLAGS)
flags.DEFINE_bool("strict", True, "Fail when a variable is missing from the input or an input tensor is unused.",
                  flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty output directory.", flag_values=FLAGS)
flags.DEFINE_string("vocab_file", None, "Vocabulary to ship with the output (default: the input's).",
                    flag_values=FLAGS)
flags.DEFINE_string("bert_config_file", None, "Config of an input directory that holds only checkpoints.",
                    flag_values=FLAGS)
flags.DEFINE_bool("do_lower_case", None, "Casing to record (default: the input's).", flag_values=FLAGS)
flags.DEFINE_bool("verify", True, "Reload the written model and compare outputs with the converted one.",
                  flag_values=FLAGS)
flags.DEFINE_bool("pretraining_heads", True, "Write the input's masked-LM (and next-sentence) head with the encoder "
                  "when it has one.", flag_values=FLAGS)


def _stage(index, total, text):
    print(f"[{index}/{total}] {text}", flush=True)


def with_pretraining_heads(encoder, path, assignment_map=None):
    """`BertMaskedLM` over `encoder` holding the pretraining heads of the checkpoint at `path` (masked LM, with the
    next-sentence head when it has one too), or None when it has no masked-LM head. The checkpoint is read once."""
    model = BertMaskedLM(encoder, next_sentence=True)
    report = load_checkpoint(model, path, strict=False, assignment_map=assignment_map, heads=True)
    if head_loaded(model, report):
        return model
    loaded = {item.target for item in report.loaded}
    if not all(v.path in loaded for v in model.masked_lm.weights):
        return None
    masked_lm_only = BertMaskedLM(encoder)
    masked_lm_only.masked_lm.set_weights(model.masked_lm.get_weights())
    return masked_lm_only


def _head_logits(model, probe):
    outputs = model(probe)
    sequence = outputs["sequence_output"] if model.next_sentence else outputs
    logits = [np.asarray(model.masked_lm(sequence))]
    return logits + [np.asarray(outputs["next_sentence"])] if model.next_sentence else logits


def convert(input_path, output_dir, output_format, assignment_map=None, strict=True, overwrite=False,
            vocab_file=None, do_lower_case=None, verify=True, config_file=None, pretraining_heads=True):
    """Library form of the CLI. Returns (LoadReport, max abs output difference after reload or None)."""
    total = 4 if verify else 3
    start = time.perf_counter()
    user_map = AssignmentMap.from_json_file(assignment_map) if assignment_map else None
    encoder = BertEncoder.from_pretrained(input_path, strict=strict, assignment_map=user_map, config_file=config_file,
                                          vocab_file=vocab_file, do_lower_case=do_lower_case)
    files, c = encoder.pretrained, encoder.bert_config
    _stage(1, total, f"input {files.weights_path}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
                     f"{c.num_attention_heads} heads, vocab {c.vocab_size}, {c.hidden_act}; tokenizer from "
                     f"{files.tokenizer.source}")
    model = with_pretraining_heads(encoder, files.weights_path, user_map) if pretraining_heads else None
    heads = f"; pretraining heads: masked LM{' and next sentence' if model.next_sentence else ''}" if model else ""
    _stage(2, total, f"loaded {len(encoder.load_report.loaded)} tensors "
                     f"({encoder.load_report.num_loaded_parameters:,} parameters) from {encoder.load_report.format}"
                     f"{heads}")
    WRITERS[output_format](model or encoder, output_dir, overwrite=overwrite)
    _stage(3, total, f"wrote {output_format} model to {output_dir}: {', '.join(sorted(os.listdir(output_dir)))}")
    difference = None
    if verify:
        reloaded = BertEncoder.from_pretrained(output_dir)
        probe = BertPreprocessor.from_pretrained(output_dir, seq_length=32)(
            ["Checkpoint conversion check.", "A second, longer sentence for the probe batch."], ["pair", ""])
        a, b = encoder(probe), reloaded(probe)
        difference = max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k]))))
                         for k in ("sequence_output", "pooled_output"))
        if model is not None:
            heads = with_pretraining_heads(reloaded, output_dir)
            if heads is None or heads.next_sentence != model.next_sentence:
                raise ValueError(f"The written model at {output_dir} lost the pretraining heads.")
            difference = max([difference] + [float(np.max(np.abs(x - y))) for x, y in
                                              zip(_head_logits(model, probe), _head_logits(heads, probe))])
        _stage(4, total, f"verified: reloaded {output_dir}, max |output difference| = {difference:.3g}")
        if difference > 1e-6:
            raise ValueError(f"The written model's outputs differ from the input's by {difference:.3g} (> 1e-6).")
    print(encoder.load_report)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return encoder.load_report, difference


def main(argv=None) -> int:
    """Parses flags from `argv` (default sys.argv), runs `convert`, returns the exit code."""
    argv = sys.argv if argv is None else argv
    try:
        FLAGS.unparse_flags()
        rest = FLAGS(argv)
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments {rest[1:]}")
        for name in ("input", "output_dir"):
            if not FLAGS[name].value:
                raise flags.Error(f"--{name} is required")
    except flags.Error as e:
        print(f"error: {e}. Usage: python -m tfx_transfer.jobs.convert --input=... --output_dir=... "
              "--output_format={google,hf,keras}", file=sys.stderr)
        return 2
    try:
        convert(FLAGS.input, FLAGS.output_dir, FLAGS.output_format, FLAGS.assignment_map, FLAGS.strict,
                FLAGS.overwrite, FLAGS.vocab_file, FLAGS.do_lower_case, FLAGS.verify, FLAGS.bert_config_file,
                FLAGS.pretraining_heads)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
