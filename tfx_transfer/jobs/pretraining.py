"""The run_pretraining.py job: continued masked-LM pretraining of a BERT on your own text (domain-adaptive, DAPT)
or on a task's own texts (task-adaptive, TAPT; Gururangan et al. 2020, "Don't Stop Pretraining").

    python run_pretraining.py --input_file=corpus.txt --eval_file=held_out.txt --do_train --do_eval \\
        --output_dir=/tmp/dapt [--init_checkpoint=... | --pretrained=DIR] [--whole_word_masking]
    python run_pretraining.py --task_name=SST-2 --data_dir=glue_data/SST-2 --do_train --do_eval --output_dir=/tmp/tapt
    python run_classifier.py --init_checkpoint=/tmp/tapt/final ...          # then fine-tune from it

Text: google-research/bert's format (one sentence per line, a blank line between documents), packed into
sequences of whole sentences of one document (data/pretraining.py); or a GLUE task's training texts (its dev texts
are the held-out text). Masking follows google-research/bert (data/masking.py): --masked_lm_prob of each sequence's
tokens, at most --max_predictions_per_seq, 80% [MASK] / 10% random / 10% unchanged, --whole_word_masking, new
masks every epoch (--dynamic_masking, default) or the same ones; made in the input pipeline from (seed, epoch,
batch), so a resumed run trains on the same masks. The masked-LM head is tied to the word embeddings; it is loaded
from a run_pretraining.py final/, a google-research/bert pretraining checkpoint (cls/predictions) or a transformers
BertForMaskedLM / BertForPreTraining model (cls.predictions), and otherwise new; a new head first trains alone
(--head_warmup_steps, default 10% of the updates). Adapters, LoRA, freezing and the optimisation flags work as in
the other scripts (a Hub module is unwrapped, adapters included).

Next-sentence prediction (--next_sentence_prediction, off by default as in RoBERTa): the sequences are then
sentence pairs [CLS] A [SEP] B [SEP] made as google-research/bert's create_pretraining_data.py makes them (B the
text that follows A, or half the time a random other document's; data/pretraining.next_sentence_pairs), drawn once
from --seed; the head on the pooled output loads from google-research/bert (cls/seq_relationship) and transformers
BertForPreTraining (cls.seq_relationship) checkpoints, and its loss is added to the masked-LM loss. It needs
documents of several sentences held in memory (not a streamed corpus).

Corpora larger than memory are streamed (--streaming: on, off, auto = above 256 MB; data/streaming.py): read,
tokenised and packed by tf.data on the fly, shuffled in a buffer of --shuffle_buffer sequences, pass after pass
(each pass's file order and shuffle seeded by (--seed, pass)); peak memory does not grow with the corpus. The step
count comes from one counting pass, or from --num_train_steps. A resumed run skips the batches it trained on.

Outputs in --output_dir:
  eval_results.txt     masked_lm_accuracy, masked_lm_loss (on the held-out text, masks fixed by --seed),
                       next_sentence_accuracy, next_sentence_loss (with --next_sentence_prediction; pairs fixed by
                       --seed), eval_sequences, global_step
  final/               model.keras (encoder + masked-LM head), config.json, vocab.txt, task.json: a valid
                       --init_checkpoint for run_classifier.py / run_squad.py / run_ner.py (the head is discarded there)
  checkpoints/, logs/  resumable training state, TensorBoard scalars
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfx_transfer.data.glue import GENERIC_TASKS, get_processor
from tfx_transfer.data.masking import MaskingConfig, target_maker
from tfx_transfer.data.pipeline import dataset, plan_batches
from tfx_transfer.data.pretraining import (CorpusError, documents_of_examples, next_sentence_pairs, pack_documents,
                                           read_documents)
from tfx_transfer.data.streaming import CorpusFiles, StreamedCorpus, check_corpus
from tfx_transfer.jobs import distribution, flags
from tfx_transfer.jobs.cli import run_main
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.model_card import ModelCard
from tfx_transfer.jobs.model_setup import (build_encoder, freeze_unused_pooler, head_loaded, prepare_model,
                                           resolve_model_source)
from tfx_transfer.jobs.options import PretrainingOptions
from tfx_transfer.jobs.outputs import export_and_plot, finish_training, output_path, write_text
from tfx_transfer.jobs.run_lock import OutputDirLock
from tfx_transfer.jobs.training import compile_and_train
from tfx_transfer.models.masked_lm import BertMaskedLM
from tfx_transfer.text.tokenizer import BertTokenizer


def define_flags():
    """run_pretraining.py's absl flags (see jobs/flags.py)."""
    flags.define_pretraining_flags()


def _files(patterns, flag):
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise FlagError(f"--{flag}={pattern}: no file matches.")
        paths += found
    return paths


STREAM_ABOVE_BYTES = 256 << 20  # --streaming=auto streams corpora larger than this


@dataclasses.dataclass
class _Texts:
    train: object  # documents, CorpusFiles (streamed), or None
    held_out: list
    train_source: str  # the training text's path(s), for the model card


def _read_texts(o: PretrainingOptions) -> _Texts:
    """Every text the run needs, read and checked before the model is built."""
    if o.task_name and o.input_file:
        raise FlagError("--task_name (TAPT on a task's texts) and --input_file (a corpus) both name the training text; "
                        "pass one.")
    if o.task_name:
        if o.task_name.lower() in GENERIC_TASKS:
            raise FlagError(f"--task_name={o.task_name}: a GLUE task name is needed here; for your own text give "
                            "--input_file (one sentence per line).")
        try:
            processor = get_processor(o.task_name)
        except ValueError as e:
            raise FlagError(f"--task_name={o.task_name}: {e}") from e
        if not o.data_dir or not os.path.isdir(o.data_dir):
            raise FlagError(f"--task_name={o.task_name} needs --data_dir, the directory of its .tsv files.")
        train = documents_of_examples(processor.train_examples(o.data_dir)) if o.do_train else None
        held_out = documents_of_examples(processor.dev_examples(o.data_dir)) if o.do_eval else None
        source = os.path.join(o.data_dir, "")
        return _Texts(_first(train, o), held_out, source)
    if o.do_train and not o.input_file:
        raise FlagError("--do_train needs --input_file (text, one sentence per line) or --task_name/--data_dir.")
    if o.do_eval and not o.eval_file:
        raise FlagError("--do_eval needs --eval_file (held-out text in the same format).")
    train = None
    try:
        if o.do_train:
            paths = _files(o.input_file, "input_file")
            if _streams(o, paths):
                if o.training.max_train_examples:
                    raise FlagError("--max_train_examples takes the first documents of a corpus held in memory; a "
                                    "streamed corpus (--streaming) is used whole (limit the run with "
                                    "--num_train_steps).")
                if o.training.ewc:
                    raise FlagError("--ewc estimates its Fisher from training texts held in memory; it does not "
                                    "combine with a streamed corpus (--streaming).")
                if o.next_sentence_prediction:
                    raise FlagError("--next_sentence_prediction draws its random second segments from the whole "
                                    "corpus held in memory; it does not combine with a streamed corpus (pass "
                                    "--streaming=off if the corpus fits in memory).")
                train = check_corpus(paths)
                logging.info("Streaming %d file(s), %.1f MB, %d lines.", len(paths), train.bytes / 2**20, train.lines)
            else:
                train = _first(read_documents(paths), o)
        held_out = read_documents(_files(o.eval_file, "eval_file")) if o.do_eval else None
    except CorpusError as error:
        raise FlagError(str(error)) from None
    return _Texts(train, held_out, ",".join(o.input_file or ()))


def _streams(o: PretrainingOptions, paths) -> bool:
    """--streaming: on, off, or auto (the files total more than STREAM_ABOVE_BYTES)."""
    if o.streaming != "auto":
        return o.streaming == "on"
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p)) > STREAM_ABOVE_BYTES


def _first(documents, o: PretrainingOptions):
    """--max_train_examples: the first that many documents."""
    if documents is not None and o.training.max_train_examples:
        return documents[:o.training.max_train_examples]
    return documents


def _validate(o: PretrainingOptions):
    if not 0 < o.masked_lm_prob <= 1:
        raise FlagError(f"--masked_lm_prob={o.masked_lm_prob} must be in (0, 1].")
    if o.max_predictions_per_seq < 1:
        raise FlagError(f"--max_predictions_per_seq={o.max_predictions_per_seq} must be >= 1.")
    if o.training.evaluates_during_training:
        raise FlagError("--eval_every_steps / --eval_every_epoch are not supported by run_pretraining.py yet; "
                        "evaluate the finished run with --do_eval.")
    if o.head_warmup_steps > 0 and o.training.unfreezing != "none":
        raise FlagError(f"--head_warmup_steps={o.head_warmup_steps} is a head-only phase of its own: it does not "
                        f"combine with --unfreezing={o.training.unfreezing}.")
    if o.num_train_steps is not None and o.num_train_steps < 1:
        raise FlagError(f"--num_train_steps={o.num_train_steps} must be >= 1.")
    if not 0 <= o.short_seq_prob <= 1:
        raise FlagError(f"--short_seq_prob={o.short_seq_prob} must be in [0, 1].")
    if o.shuffle_buffer < 1:
        raise FlagError(f"--shuffle_buffer={o.shuffle_buffer} must be >= 1.")
    if o.task_name and o.streaming == "on":
        raise FlagError("--streaming=on streams an --input_file corpus; a task's texts (--task_name) are held in "
                        "memory.")
    if o.do_predict or o.do_export:
        raise FlagError("run_pretraining.py trains and evaluates (--do_train, --do_eval); it has no --do_predict or "
                        "--do_export: fine-tune from its final/ with the other scripts.")


def head_warmup(o: PretrainingOptions, num_sequences: int, head_is_new: bool):
    """The training options with the head-only phase (--head_warmup_steps; -1: 10% of the updates for a new head,
    none for a loaded one) as a sequential-unfreezing plan (adaptation/unfreezing.py: the head alone, then
    everything), so it follows the optimizer's step and a resumed run continues in the right phase."""
    training = o.training
    per_epoch = num_sequences / (training.train_batch_size * training.gradient_accumulation_steps)
    steps = o.head_warmup_steps
    if steps < 0:
        steps = int(0.1 * per_epoch * training.num_train_epochs) if head_is_new and training.unfreezing == "none" \
            else 0
    if steps == 0:
        return training
    logging.info("Head warm-up: the masked-LM head trains alone for the first %d updates (%s).", steps,
                 "a new head" if head_is_new else "--head_warmup_steps")
    return dataclasses.replace(training, unfreezing="sequential",
                               sequential_unfreezing_epochs=((steps + 0.5) / per_epoch, 0.0))


def run(o: PretrainingOptions):
    """Runs the job; every input is read and checked before the model is built."""
    flags.warn_ignored_tpu_flags(o)
    strategy = distribution.strategy(o.distribution)
    source = resolve_model_source(o.model)
    flags.validate_common(o, source.max_positions, modes=("do_train", "do_eval"))
    _validate(o)
    texts = _read_texts(o)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    try:
        masking = MaskingConfig.for_tokenizer(tokenizer, rate=o.masked_lm_prob,
                                              max_predictions=o.max_predictions_per_seq,
                                              whole_word=o.whole_word_masking, dynamic=o.dynamic_masking,
                                              seed=o.training.seed)
    except ValueError as error:
        raise FlagError(str(error)) from None
    out = o.output.output_dir
    os.makedirs(out, exist_ok=True)
    with OutputDirLock(out) if distribution.is_chief() else contextlib.nullcontext():
        return _run(o, strategy, source, texts, tokenizer, masking)


def masked_lm_metrics(model: BertMaskedLM, split, masking: MaskingConfig, batch_size: int, max_seq_length: int):
    """{masked_lm_accuracy, masked_lm_loss, eval_sequences, eval_predictions} of `model` on `split` with static
    masks (epoch 0 of `masking`'s seed, whatever --dynamic_masking says): the same predictions for every run with
    that seed; with a next-sentence head, next_sentence_accuracy and next_sentence_loss on the split's pairs too."""
    pairs = model.next_sentence
    with_targets = target_maker(dataclasses.replace(masking, dynamic=False), next_sentence=pairs)
    plan = plan_batches(split.lengths, batch_size, max_seq_length, shuffle=False)

    @tf.function(reduce_retracing=True)
    def scores(inputs, labels, position):
        inputs, targets = with_targets(inputs, labels, 0, position)
        outputs = model(inputs, training=False)
        sequence, word_targets = (outputs["sequence_output"], targets["masked_lm"]) if pairs else (outputs, targets)
        losses, logits, word_targets, weights = model.prediction_losses(sequence, word_targets)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), word_targets), tf.float32)
        sums = [tf.reduce_sum(losses * weights), tf.reduce_sum(correct * weights), tf.reduce_sum(weights)]
        if pairs:
            pair_losses = model.next_sentence_losses(outputs, targets["next_sentence"])
            right = tf.equal(tf.argmax(outputs["next_sentence"], -1, output_type=tf.int32),
                             tf.cast(targets["next_sentence"], tf.int32))
            sums += [tf.reduce_sum(pair_losses), tf.reduce_sum(tf.cast(right, tf.float32))]
        return sums

    total = np.zeros(5 if pairs else 3)
    for position, (inputs, labels) in enumerate(dataset(split, plan)):
        total += [float(v) for v in scores(inputs, labels, tf.constant(position, tf.int64))]
    predictions = max(total[2], 1.0)
    results = {"masked_lm_accuracy": total[1] / predictions, "masked_lm_loss": total[0] / predictions}
    if pairs:
        results.update(next_sentence_accuracy=total[4] / len(split), next_sentence_loss=total[3] / len(split))
    return {**results, "eval_sequences": len(split), "eval_predictions": int(total[2])}


def _sequences(o: PretrainingOptions, documents, tokenizer, role: str):
    """Documents -> an EncodedSplit: packed sentences, or with --next_sentence_prediction sentence pairs."""
    try:
        if o.next_sentence_prediction:
            return next_sentence_pairs(documents, tokenizer, o.max_seq_length, o.training.seed, o.short_seq_prob)
        return pack_documents(documents, tokenizer, o.max_seq_length)
    except ValueError as error:
        raise FlagError(f"The {role} text: {error}") from None


def _training_split(o: PretrainingOptions, texts: _Texts, tokenizer, card: ModelCard):
    """The training sequences: packed in memory, or a `StreamedCorpus` (counted by one streamed pass unless
    --num_train_steps makes the count unnecessary)."""
    if isinstance(texts.train, CorpusFiles):
        nominal = o.num_train_steps * o.training.train_batch_size if o.num_train_steps else None
        split = StreamedCorpus(texts.train, tokenizer, o.max_seq_length, shuffle_buffer=o.shuffle_buffer,
                               num_sequences=nominal)
        card.data_files("train", zip(texts.train.paths, texts.train.file_lines, texts.train.sha256))
        if nominal is None:
            start = time.perf_counter()
            logging.info("Counting the streamed corpus's sequences (one pass; --num_train_steps skips it): %d in "
                         "%.1f s.", len(split), time.perf_counter() - start)
        return split
    split = _sequences(o, texts.train, tokenizer, "training")
    if os.path.isfile(texts.train_source):  # one corpus file (the card records a file's checksum)
        card.data_file("train", texts.train_source, len(texts.train))
    logging.info("%d documents -> %d sequences of <= %d tokens (mean %.1f).", len(texts.train), len(split),
                 o.max_seq_length, float(split.lengths.mean()))
    return split


def _with_steps(o: PretrainingOptions, num_sequences: int):
    """The training options, with --num_train_steps as the epochs it makes (a streamed corpus given a step count
    is one nominal epoch of that many batches)."""
    if not o.num_train_steps:
        return o.training
    batch = o.training.train_batch_size
    return dataclasses.replace(o.training, num_train_epochs=(o.num_train_steps + 0.5) * batch / num_sequences)


def _run(o: PretrainingOptions, strategy, source, texts: _Texts, tokenizer, masking: MaskingConfig):
    out = o.output.output_dir
    keras.utils.set_random_seed(o.training.seed)
    with strategy.scope():
        model = BertMaskedLM(build_encoder(source, o.model, o.distribution, needs_layers=True),
                             o.max_predictions_per_seq, next_sentence=o.next_sentence_prediction)
        report = prepare_model(model, source, o.model, will_train=o.do_train, task_name="masked_lm")
        if not o.next_sentence_prediction:
            freeze_unused_pooler(model)
    card = ModelCard("run_pretraining.py", o)
    card.base_model(source)
    card.load_report = str(report) if report is not None else None
    task = {"task": "masked_lm", "max_seq_length": o.max_seq_length, "masked_lm_prob": o.masked_lm_prob,
            "max_predictions_per_seq": o.max_predictions_per_seq, "whole_word_masking": o.whole_word_masking,
            "dynamic_masking": o.dynamic_masking, "next_sentence_prediction": o.next_sentence_prediction,
            "initialised_from": source.description}
    card.task = task
    held_out = _sequences(o, texts.held_out, tokenizer, "held-out") if o.do_eval else None
    global_step, final_dir = 0, None
    if o.do_train:
        split = _training_split(o, texts, tokenizer, card)
        training = _with_steps(o, len(split))
        training = head_warmup(dataclasses.replace(o, training=training), len(split),
                               head_is_new=report is None or not head_loaded(model, report))
        result = compile_and_train(model, split, "sequences", training, o.max_seq_length, out,
                                   vocab_file=tokenizer.vocab_file, batch_transform=target_maker(masking, o.next_sentence_prediction))
        global_step = result["steps"]
        logging.info("Trained to step %d; %.1f sequences/s.", global_step, result["examples_per_s"])
        final_dir = finish_training(model, result, None, card, task, out, tokenizer, o.model.adaptation)
    if o.do_eval:
        start = time.perf_counter()
        results = masked_lm_metrics(model, held_out, masking, o.eval_batch_size, o.max_seq_length)
        card.record_evaluation(len(held_out), time.perf_counter() - start)
        results["global_step"] = global_step
        lines = [f"{key} = {value}" for key, value in results.items()]
        write_text(output_path(out, "eval_results.txt"), "\n".join(lines) + "\n")
        logging.info("***** Eval results *****\n  %s", "\n  ".join(lines))
        card.metrics = results
        if final_dir:
            card.write(final_dir)
    export_and_plot(o, model, card, tokenizer)
    return 0


def main(argv):
    """absl entry point: one-line errors and exit code 2 for bad input."""
    return run_main(lambda: run(flags.parse_pretraining_options()), argv)
