"""The scripts' absl flags: their definitions, the one place they are read (`parse_*_options`: FLAGS -> the frozen
options of `jobs/options.py`, once per run), and the checks on the parsed options.

google-research/bert's names and defaults come first, so old command lines work; tfx_transfer's own flags
follow. TPU-only flags are accepted and ignored with a warning. Checks raise `FlagError` with one line that names
the flag, its value and the fix; the scripts print it and exit with code 2. Nothing outside this module reads FLAGS.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from absl import flags, logging

from tfx_transfer.adaptation.schedules import SCHEDULES
from tfx_transfer.adaptation.strategies import STRATEGIES
from tfx_transfer.adaptation.unfreezing import UNFREEZING
from tfx_transfer.data.glue import task_names
from tfx_transfer.data.pipeline import PADDINGS, default_padding
from tfx_transfer.jobs import distribution
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import (ClassifierOptions, DistributionOptions, ModelOptions, NerOptions,
                                       OutputOptions, PretrainingOptions, SquadOptions, TrainingOptions)
from tfx_transfer.layers.adapter_config import KINDS, PRESETS
from tfx_transfer.layers.ia3 import IA3_TARGETS
from tfx_transfer.models.feature_classifier import FEATURE_HEADS

FLAGS = flags.FLAGS
TPU_FLAGS = ("use_tpu", "tpu_name", "tpu_zone", "gcp_project", "master", "num_tpu_cores", "iterations_per_loop")


class _Definer:
    """`flags.DEFINE_*` that skips names already defined, so both scripts' flags can live in one process (tests)."""

    def __getattr__(self, kind):
        define = getattr(flags, kind)

        def once(name, *args, **kwargs):
            if name not in FLAGS:
                define(name, *args, **kwargs)
        return once


define = _Definer()


def define_common_flags(max_seq_length: int, train_batch_size: int = 32, learning_rate: float = 5e-5,
                        num_train_epochs: float = 3.0):
    """Flags both scripts share (google-research/bert names and defaults, then ours)."""
    define.DEFINE_string("bert_config_file", None, "bert_config.json of the pretrained model (with --init_checkpoint, "
                        "when its directory has none, e.g. a fine-tuning output_dir of google-research/bert).")
    define.DEFINE_string("vocab_file", None, "vocab.txt the model was trained with (with --init_checkpoint, when its "
                        "directory has no vocab.txt or tokenizer.json).")
    define.DEFINE_string("output_dir", None, "Where checkpoints, logs, results and the final model are written.")
    define.DEFINE_string("init_checkpoint", None, "Initial checkpoint, pretrained or fine-tuned (a task head that "
                        "fits is loaded too): a Google bert_model.ckpt / model.ckpt-N, a Hugging Face directory "
                        "(transformers 4 or 5), a Model Garden checkpoint (name- or object-based), a keras-hub preset, "
                        "a TF Hub SavedModel, or a previous run's output_dir/final.")
    define.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models). Checked against the vocabulary.")
    define.DEFINE_integer("max_seq_length", max_seq_length, "Maximum tokens after WordPiece, special tokens included.")
    define.DEFINE_bool("do_train", False, "Train.")
    define.DEFINE_bool("do_predict", False, "Predict on the test/predict file.")
    define.DEFINE_integer("train_batch_size", train_batch_size, "Total batch size for training (global: summed over "
                          "all replicas of --distribution_strategy).")
    define.DEFINE_integer("predict_batch_size", 8, "Total batch size for prediction (global).")
    define.DEFINE_float("learning_rate", learning_rate, "Peak learning rate of AdamW.")
    define.DEFINE_float("num_train_epochs", num_train_epochs, "Training epochs (fractions allowed).")
    define.DEFINE_float("warmup_proportion", 0.1, "Fraction of training steps with linear learning-rate warmup.")
    define.DEFINE_integer("save_checkpoints_steps", 1000, "Save a resumable checkpoint every this many steps.")
    for name in TPU_FLAGS:
        if name in ("use_tpu",):
            define.DEFINE_bool(name, False, "Accepted for compatibility with google-research/bert; ignored.")
        elif name in ("num_tpu_cores", "iterations_per_loop"):
            define.DEFINE_integer(name, None, "Accepted for compatibility with google-research/bert; ignored.")
        else:
            define.DEFINE_string(name, None, "Accepted for compatibility with google-research/bert; ignored.")

    define.DEFINE_string("hub_module_handle", None, "A TF Hub BERT encoder (SavedModel path or handle) instead of a "
                         "checkpoint: vocab and casing come from the module. --adaptation=full/feature_extraction use it "
                         "as a black box; other adaptations unwrap it (BertEncoder.from_hub).")
    define.DEFINE_string("pretrained", None, "Model directory or packaged model name (config + vocab + weights in "
                        "one); default all-MiniLM-L6-v2 when no --init_checkpoint is given.")
    define.DEFINE_enum("adaptation", "full", list(STRATEGIES), "Which weights train.")
    define.DEFINE_integer("adapter_size", 64, "Adapter bottleneck size (or PAL width).")
    define.DEFINE_float("adapter_init_stddev", 1e-2, "Truncated-normal stddev of the bottleneck adapters' and PALs' "
                        "kernels: 1e-2 as Houlsby et al. write, 1e-3 as adapter-bert's code initialises them.")
    define.DEFINE_enum("adapter_kind", None, list(KINDS) + list(PRESETS), "Adapter kind (default: houlsby for "
                       "--adaptation=adapters, lora for --adaptation=lora); mam and unipelt are unions of kinds "
                       "(AdapterUnion.mam / .unipelt: He et al. 2022, Mao et al. 2022).")
    define.DEFINE_integer("lora_rank", 8, "LoRA rank r.")
    define.DEFINE_integer("prefix_length", 20, "Prefix tuning (--adapter_kind=prefix): prefix positions per layer.")
    define.DEFINE_integer("prefix_projection", 0, "Prefix tuning: width of the reparameterisation MLP that trains the "
                          "prefixes (Li & Liang 2021 use 512; dropped from the adapter file); 0 trains them directly.")
    define.DEFINE_integer("prompt_length", 20, "Prompt tuning (--adapter_kind=prompt): P, the vectors inserted after "
                          "[CLS] (initialised from the embeddings of P sampled vocabulary tokens, Lester et al.).")
    define.DEFINE_list("ia3_targets", None, f"(IA)^3 (--adapter_kind=ia3): what its vectors rescale, of "
                       f"{', '.join(IA3_TARGETS)} (default: the paper's key,value,ffn; Hugging Face peft's BERT default "
                       "adds attention_output).")
    define.DEFINE_integer("adapter_drop", 0, "AdapterDrop (Rücklé et al. 2021): no adaptation in the lowest N layers, "
                          "so nothing trains below them and the backward pass stops there (faster training).")
    define.DEFINE_integer("phm_dim", 4, "Compacter (--adapter_kind=compacter): n, the size of the shared PHM rules "
                          "(--adapter_size and the hidden size must be divisible by it).")
    define.DEFINE_integer("phm_rank", 1, "Compacter: the rank of each PHM factor (the paper: 1).")
    define.DEFINE_integer("top_k", 2, "Layers trained by --adaptation=top_k.")
    define.DEFINE_bool("train_layer_norms", None, "With adapters: train the encoder's LayerNorms too (default: yes "
                       "for houlsby/pfeiffer/parallel/lora/pal, as adapter-bert; no for ia3, prefix and compositions, "
                       "as AdapterHub). Adapters to be stacked or fused later must be trained with false.")
    define.DEFINE_list("stack_adapters", None, "Stack the new adapter (--adaptation=adapters, a bottleneck kind) over "
                       "these trained ones, kept frozen: NAME:PATH pairs in order, PATH a run's --output_dir, its "
                       "final/ or an adapter.safetensors (MAD-X: a language or domain adapter under a task adapter).")
    define.DEFINE_list("fuse_adapters", None, "With --adaptation=fusion: the trained adapters AdapterFusion combines "
                       "(kept frozen; it trains its attention and the head), NAME:PATH pairs as --stack_adapters.")
    define.DEFINE_string("assignment_map", None, "JSON assignment map applied before the checkpoint's built-in rules.")
    define.DEFINE_integer("max_train_examples", None, "Use only the first N training examples.")
    define.DEFINE_integer("seed", 0, "Random seed (initialisation, dropout, data order).")
    define.DEFINE_bool("jit_compile", False, "Compile training and inference steps with XLA.")
    define.DEFINE_bool("run_eagerly", False, "Debugging: run training steps eagerly (no tf.function).")
    define.DEFINE_enum("batch_padding", None, list(PADDINGS), "How far each batch is padded: longest = to its own "
                       "longest row (length-grouped batches, one trace for every shape), buckets = to a multiple of "
                       "16, max_length = to --max_seq_length. Default: longest, or buckets with --jit_compile (XLA "
                       "compiles once per shape).")
    define.DEFINE_float("weight_decay", 0.01, "Decoupled weight decay (not applied to LayerNorm and biases).")
    define.DEFINE_string("export_dir", None, "Export a TF Serving SavedModel (raw-text signatures) under this base "
                         "directory as <export_dir>/<version>/, after training or with --do_export.")
    define.DEFINE_bool("do_export", False, "Export the model named by --init_checkpoint (e.g. a finished run's "
                       "output_dir/final) without training; needs --export_dir.")
    define.DEFINE_integer("export_version", None, "Version number of the export (default: the next one).")
    define.DEFINE_enum("serving_dtype", "float32", ["float32", "bfloat16"], "Precision of the exported encoder's "
                       "matmuls: bfloat16 (Keras mixed_bfloat16: float32 weights and logits) is faster on CPUs with "
                       "AVX512-BF16 or AMX; bench/results/serving_bf16.md measures speed and accuracy.")
    define.DEFINE_integer("eval_every_steps", 0, "Evaluate during training every N steps (run_classifier: on the dev "
                          "set, with --do_eval; run_squad: on --predict_file, with --do_predict --eval), keep the best "
                          "model by --keep_best and make it final/. 0: evaluate only after training.")
    define.DEFINE_bool("eval_every_epoch", False, "Evaluate during training at the end of every epoch (as "
                       "--eval_every_steps).")
    define.DEFINE_string("keep_best", None, "The metric that picks the best model during training: eval_accuracy, "
                         "eval_f1, eval_mcc, eval_pearson, eval_loss (lower is better), ...; default the task's "
                         "official metric (the first in eval_results.txt; run_squad: eval_f1).")
    define.DEFINE_bool("plot_training", False, "After training, draw the run's loss, learning rate and evaluations "
                       "during training into <output_dir>/training.png (python -m tfx_transfer.plot does it later).")
    define.DEFINE_integer("early_stopping_patience", 0, "Stop training after this many evaluations during training "
                          "without improvement of --keep_best (0: never).")
    define_distribution_flags()
    define_optimisation_flags()


def define_optimisation_flags():
    """How and when weights update (issue 9): schedule, clipping, accumulation, discriminative rates, unfreezing,
    regularisation toward the pretrained weights, auxiliary masked-LM."""
    define.DEFINE_float("layerwise_lr_decay", 1.0, "Discriminative learning rates: depth d from the top trains at "
                       "learning_rate x decay**d (1.0 = off).")
    define.DEFINE_enum("lr_schedule", "linear", list(SCHEDULES), "Learning-rate schedule: linear = google-research/"
                       "bert (warmup, decay from step 0), linear_after_warmup = Hugging Face, slanted_triangular = "
                       "ULMFiT (--warmup_proportion is its cut_frac), constant (after warmup).")
    define.DEFINE_float("stlr_ratio", 32.0, "slanted_triangular: ratio of the peak to the lowest learning rate.")
    define.DEFINE_float("adam_epsilon", 1e-6, "AdamW epsilon (google-research/bert 1e-6; Hugging Face 1e-8).")
    define.DEFINE_enum("adam_epsilon_mode", "keras", ["keras", "pytorch"], "Where --adam_epsilon enters Adam's "
                       "update: keras = added to sqrt(v) before the bias correction (Keras/TF Adam), pytorch = added "
                       "to the bias-corrected sqrt(v_hat) (Kingma & Ba Algorithm 1, torch.optim.AdamW, Hugging Face).")
    define.DEFINE_float("clip_norm", 1.0, "Clip gradients at this global norm (0 = no clipping).")
    define.DEFINE_integer("gradient_accumulation_steps", 1, "Average this many batches' gradients per update "
                          "(effective batch = train_batch_size x this; steps and warmup count updates).")
    define.DEFINE_enum("unfreezing", "none", list(UNFREEZING), "When layers start training: gradual (ULMFiT: one "
                       "more block from the top every interval), chain_thaw (Felbo et al.: head, then each layer "
                       "alone bottom-up, then all), sequential (Chronopoulou et al.: head, all but embeddings, all).")
    define.DEFINE_integer("unfreezing_interval", 0, "gradual/chain_thaw: updates per phase (0 = training split "
                          "evenly over the phases).")
    define.DEFINE_list("sequential_unfreezing_epochs", ["1", "1"], "sequential: epochs of head-only training, then "
                       "of all-but-embeddings training (the rest trains everything).")
    define.DEFINE_float("l2sp", 0.0, "L2-SP coefficient alpha: alpha/2 ||w - w_pretrained||^2 on the encoder "
                        "(0 = off). Turns weight decay off unless --weight_decay is given.")
    define.DEFINE_float("ewc", 0.0, "EWC coefficient lambda: lambda/2 sum F (w - w_pretrained)^2, F the diagonal "
                        "Fisher of masked-LM on the training text (0 = off).")
    define.DEFINE_integer("ewc_examples", 64, "EWC: training texts (one at a time) for the Fisher estimate.")
    define.DEFINE_integer("ewc_head_steps", 100, "EWC: steps fitting a masked-LM head first (the checkpoint may "
                          "have none; 0 = use a new head as it is).")
    define.DEFINE_float("aux_mlm_weight", 0.0, "Auxiliary masked-LM on the training batches' own text, weighted "
                        "against the task loss (the seeds use 0.5; 0 = off).")


def define_distribution_flags():
    """Model Garden's tf.distribute flags (see jobs/distribution.py)."""
    define.DEFINE_enum("distribution_strategy", "default", list(distribution.STRATEGIES),
                       "tf.distribute strategy: default (one device), one_device, mirrored (the local GPUs or "
                       "--num_cpu_devices), multi_worker_mirrored (workers from TF_CONFIG), tpu. Batch sizes are "
                       "global.")
    define.DEFINE_integer("num_gpus", None, "GPUs for mirrored/one_device (default: all visible; 0 = CPU).")
    define.DEFINE_integer("num_cpu_devices", None, "Split the CPU into this many logical devices (mirrored on CPUs).")
    define.DEFINE_enum("all_reduce_alg", None, list(distribution.ALL_REDUCE), "Gradient all-reduce: mirrored nccl / "
                       "hierarchical_copy / reduce_to_one_device, multi_worker_mirrored ring / nccl.")
    define.DEFINE_string("tpu", None, "TPU name or grpc:// address for --distribution_strategy=tpu ('local' on a TPU "
                         "VM).")


def define_inference_dtype_flag(predictions: str):
    """--inference_dtype (run_classifier.py, run_squad.py, run_ner.py); `predictions`: which of the job's
    predictions it sets, for the help text."""
    define.DEFINE_enum("inference_dtype", "float32", ["float32", "int8"], f"Precision of the job's predictions "
                       f"({predictions}): int8 computes the encoder's token projections as oneDNN int8 products from "
                       "the trained weights (per-channel weights, per-token activation ranges; x86-64 CPUs, without "
                       "XLA); the saved and exported model stays float32. Measured: bench/results/int8_prediction.md "
                       "(SST-2), bench/results/int8_squad.md (SQuAD).")


def define_classifier_flags():
    """run_classifier.py's flags."""
    define_common_flags(max_seq_length=128)
    define_probe_flags()
    define.DEFINE_string("task_name", None, f"The task: {', '.join(task_names())}.")
    define.DEFINE_string("data_dir", None, "Directory with the task's .tsv files.")
    define.DEFINE_bool("do_eval", False, "Evaluate on the dev set.")
    define.DEFINE_integer("eval_batch_size", 8, "Total batch size for evaluation.")
    define_inference_dtype_flag("evaluation during training, --do_eval, --do_predict")
    define.DEFINE_string("train_file", None, "csv task: training file.")
    define.DEFINE_string("dev_file", None, "csv task: evaluation file.")
    define.DEFINE_string("test_file", None, "csv task: prediction file.")
    define.DEFINE_string("text_a_column", "0", "csv task: first text column (index or header name).")
    define.DEFINE_string("text_b_column", None, "csv task: second text column for pairs.")
    define.DEFINE_string("label_column", "1", "csv task: label column (index or header name).")
    define.DEFINE_list("label_list", None, "csv task: the labels (comma separated); omit for regression.")
    define.DEFINE_string("delimiter", None, "csv/tsv task: field delimiter (default: a comma for csv, a tab for "
                         "tsv; '\\t' or 'tab' for a tab).")
    define.DEFINE_string("quotechar", '"', "csv/tsv task: the quote character of RFC 4180 quoting (a quoted field may "
                         "hold the delimiter, newlines and doubled quotes); 'none' reads quotes as text.")
    define.DEFINE_enum("empty_texts", "keep", ["keep", "error"], "Empty texts: processed as [CLS] [SEP] with one "
                       "warning per file (as google-research/bert and Hugging Face do), or refused naming the line.")
    define.DEFINE_bool("skip_header", True, "csv task: the files start with a header row.")
    define.DEFINE_enum("encoding_errors", "strict", ["strict", "replace"],
                       "Data files that are not UTF-8: fail naming the line (strict) or replace the bad bytes.")
    define.DEFINE_enum("features", "pooled", ["pooled", "scalar_mix"], "Classifier input: the pooled [CLS] vector "
                       "(BERT) or a learned scalar mix of all layers (ELMo; use with --adaptation=feature_extraction).")
    define.DEFINE_enum("feature_head", "linear", list(FEATURE_HEADS), "--features=scalar_mix: a linear head on the "
                       "mean of the mixed token vectors, or a BiLSTM over them.")
    define.DEFINE_list("teacher_probabilities", None, "Knowledge distillation: files of a teacher's class "
                       "probabilities on the training examples (train_probabilities.tsv of a teacher run; several "
                       "files are averaged: an ensemble teacher).")
    define.DEFINE_float("distill_temperature", 2.0, "Distillation temperature T.")
    define.DEFINE_float("distill_alpha", 0.5, "Weight of the soft-target term (1 - alpha on the hard labels).")
    define.DEFINE_integer("student_layers", None, "Distil into a student with this many of the pretrained encoder's "
                          "layers (evenly spaced, DistilBERT-style initialisation).")
    define.DEFINE_list("auxiliary_tasks", None, "Multi-task fine-tuning: other tasks trained jointly on the same "
                       "encoder, each with its own head, as TASK:DATA_DIR (e.g. MRPC:glue_data/MRPC); each step "
                       "samples a task (--task_sampling). Not resumable.")
    define.DEFINE_enum("task_sampling", "proportional", ["proportional", "temperature", "uniform"],
                       "Multi-task: p(task) proportional to its size, to size^(1/T), or uniform.")
    define.DEFINE_float("sampling_temperature", 2.0, "Multi-task: T of --task_sampling=temperature.")
    define_streaming_flags()
    define.DEFINE_bool("write_train_probabilities", False, "After training, write train_probabilities.tsv (class "
                       "probabilities on the training examples: a teacher for --teacher_probabilities).")
    define.DEFINE_list("export_tasks", None, "Export one TF Serving model (under --export_dir) that serves several "
                       "tasks adapted from the base model (--pretrained / --init_checkpoint / --hub_module_handle): "
                       "NAME:PATH pairs, PATH a run's --output_dir, its final/ or an adapter.safetensors (runs with "
                       "--adaptation=adapters or lora); requests name a task per example. No other mode with it.")


def define_probe_flags():
    """--probe_layers (run_classifier.py and run_ner.py)."""
    define.DEFINE_string("probe_layers", None, "Probing (with --adaptation=feature_extraction): 'all' or layer "
                         "numbers (0 = embeddings, e.g. 0,3,6) get one linear probe each on frozen features, trained "
                         "together; per-layer dev metrics in probe_results.tsv / .png (Tenney et al. 2019).")


def define_squad_flags():
    """run_squad.py's flags."""
    define_common_flags(max_seq_length=384)
    define_inference_dtype_flag("evaluation during training and --do_predict")
    define.DEFINE_string("train_file", None, "SQuAD JSON for training, e.g. train-v1.1.json.")
    define.DEFINE_string("predict_file", None, "SQuAD JSON for predictions, e.g. dev-v1.1.json.")
    define.DEFINE_integer("doc_stride", 128, "Stride between the windows of a long context, in tokens.")
    define.DEFINE_integer("max_query_length", 64, "Maximum question tokens; longer questions are truncated.")
    define.DEFINE_integer("n_best_size", 20, "Candidate spans kept per question (nbest_predictions.json).")
    define.DEFINE_integer("max_answer_length", 30, "Longest answer, in tokens.")
    define.DEFINE_bool("verbose_logging", False, "Log the de-tokenisation of every answer (debugging).")
    define.DEFINE_bool("version_2_with_negative", False, "SQuAD 2.0: questions may have no answer.")
    define.DEFINE_float("null_score_diff_threshold", 0.0, "v2: predict no answer when null odds exceed this.")
    define.DEFINE_bool("eval", False, "Score predictions with the official metrics (the predict file has answers).")
    define.DEFINE_bool("find_null_threshold", False, "v2: report the threshold that maximises F1 on the predict file "
                      "and apply it to predictions.json.")


def define_ner_flags():
    """run_ner.py's flags."""
    define_common_flags(max_seq_length=128)
    define_probe_flags()
    define.DEFINE_string("train_file", None, "Training file: CoNLL columns (one token per line, blank line between "
                         "sentences, -DOCSTART- skipped) or CoNLL-U (.conllu).")
    define.DEFINE_string("dev_file", None, "Evaluation file (--do_eval), same format.")
    define.DEFINE_string("test_file", None, "Prediction file (--do_predict), same format; labels not needed.")
    define.DEFINE_bool("do_eval", False, "Evaluate on --dev_file: token accuracy, and entity P/R/F1 for BIO/IOBES.")
    define.DEFINE_integer("eval_batch_size", 32, "Batch size of evaluation.")
    define_inference_dtype_flag("evaluation during training, --do_eval, --do_predict")
    define.DEFINE_integer("word_column", 0, "CoNLL: the word's column (0-based).")
    define.DEFINE_string("label_column", "-1", "CoNLL: the label's column (0-based, negative from the end); "
                         "CoNLL-U: upos or xpos (-1 means upos there).")
    define.DEFINE_list("label_list", None, "Labels in the head's order (default: those of --train_file, O first).")
    define.DEFINE_bool("label_all_tokens", False, "Train on every sub-token with its word's label (default: the "
                       "first sub-token only; predictions always come from the first).")


def define_streaming_flags():
    """--streaming, --shuffle_buffer (run_pretraining.py, run_classifier.py)."""
    define.DEFINE_enum("streaming", "auto", ["auto", "on", "off"], "Stream the training data from disk in bounded "
                       "memory instead of holding it (run_pretraining.py: the corpus read, tokenised and packed on the "
                       "fly; run_classifier.py: the training file tokenised once into a shuffled cache in "
                       "--output_dir): auto = above 256 MB of corpus / 32 MB of training file.")
    define.DEFINE_integer("shuffle_buffer", 10000, "Streaming: examples (sequences) shuffled together in memory.")


def define_pretraining_flags():
    """run_pretraining.py's flags."""
    define_common_flags(max_seq_length=128)
    define.DEFINE_list("input_file", None, "Training text (google-research/bert's format: one sentence per line, a "
                       "blank line between documents); comma-separated files or globs.")
    define.DEFINE_list("eval_file", None, "Held-out text in the same format, for --do_eval.")
    define.DEFINE_string("task_name", None, f"TAPT: pretrain on a task's own texts instead (labels unused; its dev "
                         f"texts are the held-out text): {', '.join(task_names())}.")
    define.DEFINE_string("data_dir", None, "With --task_name: the directory of its .tsv files.")
    define.DEFINE_bool("do_eval", False, "Masked-LM accuracy and loss on the held-out text (masks fixed by --seed).")
    define.DEFINE_integer("eval_batch_size", 32, "Batch size of evaluation.")
    define.DEFINE_float("masked_lm_prob", 0.15, "Fraction of each sequence's tokens predicted.")
    define.DEFINE_integer("max_predictions_per_seq", 20, "At most this many predictions per sequence.")
    define.DEFINE_bool("whole_word_masking", False, "Mask all WordPiece pieces of a chosen word together.")
    define.DEFINE_bool("dynamic_masking", True, "New masks every epoch (RoBERTa); false: the same masks every epoch "
                       "(static, fixed by --seed).")
    define.DEFINE_bool("next_sentence_prediction", False, "Also train BERT's next-sentence head: sequences are "
                       "sentence pairs made as google-research/bert's create_pretraining_data.py makes them (half "
                       "of them with a random second segment), drawn once from --seed; needs documents of several "
                       "sentences held in memory.")
    define.DEFINE_float("short_seq_prob", 0.1, "With --next_sentence_prediction: the fraction of documents whose "
                        "pairs target a random shorter length (create_pretraining_data.py's flag).")
    define_streaming_flags()
    define.DEFINE_integer("num_train_steps", None, "Train this many steps (batches) instead of --num_train_epochs "
                          "(google-research/bert's run_pretraining.py flag); a streamed corpus is then not counted "
                          "first.")
    define.DEFINE_integer("head_warmup_steps", -1, "Train the masked-LM head alone (encoder and embeddings frozen) "
                          "for this many updates first, so a new head does not wreck the encoder; -1: 10% of the "
                          "updates when the head is new, 0 when the checkpoint had one.")


# ------------------------------------------------------------------ parsing: FLAGS -> options, once per run
def _value(name):
    return FLAGS[name].value if name in FLAGS else None


def _given(name):
    """The flag's value when it was given on the command line, else None (the model or a rule decides)."""
    return FLAGS[name].value if name in FLAGS and FLAGS[name].present else None


def _tuple(name):
    value = _value(name)
    return tuple(value) if value is not None else None


def _group(cls, **computed):
    """`cls` with each field from the flag of the same name (unless `computed` gives it)."""
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in computed:
            values[field.name] = computed[field.name]
        elif field.name in FLAGS:
            values[field.name] = FLAGS[field.name].value
    return cls(**values)


def _sequential_unfreezing_epochs():
    raw = FLAGS.sequential_unfreezing_epochs
    try:
        epochs = tuple(float(e) for e in raw)
    except ValueError:
        epochs = ()
    if len(epochs) != 2 or min(epochs) < 0:
        raise FlagError(f"--sequential_unfreezing_epochs={','.join(raw)} must be two non-negative numbers n,k "
                        "(epochs of head-only, then of all-but-embeddings training).")
    return epochs


def _command_line():
    """The flags given, as `--name=value` (each once, though absl also files a flag under its short name)."""
    given = {id(FLAGS[name]): FLAGS[name] for name in FLAGS if FLAGS[name].present}
    return tuple(flag.serialize() for flag in given.values())


def _shared():
    return dict(
        model=_group(ModelOptions, do_lower_case=_given("do_lower_case"), train_layer_norms=_given("train_layer_norms"),
                     stack_adapters=_tuple("stack_adapters"), fuse_adapters=_tuple("fuse_adapters"),
                     ia3_targets=_tuple("ia3_targets")),
        training=_group(TrainingOptions, weight_decay=_given("weight_decay"),
                        batch_padding=FLAGS.batch_padding or default_padding(FLAGS.jit_compile),
                        sequential_unfreezing_epochs=_sequential_unfreezing_epochs()),
        output=_group(OutputOptions), distribution=_group(DistributionOptions),
        ignored_tpu_flags=tuple(name for name in TPU_FLAGS if FLAGS[name].present),
        command_line=_command_line())


def _job(cls, **computed):
    shared = _shared()
    names = {f.name for f in dataclasses.fields(cls)} - set(shared) - set(computed)
    return cls(**shared, **computed, **{name: FLAGS[name].value for name in names if name in FLAGS})


def _single_character(name, value, aliases):
    value = aliases.get(value, value)
    if value is not None and len(value) != 1:
        raise FlagError(f"--{name}={FLAGS[name].value!r} must be one character (or {' / '.join(map(repr, aliases))}).")
    return value


def parse_classifier_options() -> ClassifierOptions:
    """run_classifier.py's parsed command line (call after absl parsed the flags)."""
    return _job(ClassifierOptions, label_list=_tuple("label_list"),
                teacher_probabilities=_tuple("teacher_probabilities"), auxiliary_tasks=_tuple("auxiliary_tasks"),
                export_tasks=_tuple("export_tasks"),
                delimiter=_single_character("delimiter", _value("delimiter"), {"\\t": "\t", "tab": "\t"}),
                quotechar=_single_character("quotechar", _value("quotechar"), {"none": None, "": None}))


def parse_squad_options() -> SquadOptions:
    """run_squad.py's parsed command line."""
    return _job(SquadOptions)


def parse_ner_options() -> NerOptions:
    """run_ner.py's parsed command line."""
    return _job(NerOptions, label_list=_tuple("label_list"))


def parse_pretraining_options() -> PretrainingOptions:
    """run_pretraining.py's parsed command line."""
    return _job(PretrainingOptions, input_file=_tuple("input_file"), eval_file=_tuple("eval_file"))


# ------------------------------------------------------------------ validation of parsed options
def warn_ignored_tpu_flags(options):
    for name in options.ignored_tpu_flags:
        logging.warning("--%s is a TPU flag of google-research/bert; it is accepted and ignored here.", name)


def _check_writable(directory: str):
    """Creates `directory` and writes a probe file in it, so permission problems show before hours of training."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise FlagError(f"--output_dir={directory}: cannot write there ({e.strerror or e}); choose another "
                        "directory or fix its permissions.") from e


def _at_least(values: dict, minimum, strict=False):
    for name, value in values.items():
        if value is not None and (value <= minimum if strict else value < minimum):
            raise FlagError(f"--{name}={value} must be {'>' if strict else '>='} {minimum}.")


def validate_keep_best(options, metrics, default: str) -> str:
    """The metric --keep_best names (default `default`), checked against the evaluation's `metrics` before any
    training starts."""
    metric = options.training.keep_best or default
    if metric not in metrics:
        raise FlagError(f"--keep_best={metric}: the evaluation reports {', '.join(metrics)}.")
    return metric


def validate_common(options, max_seq_length_of_model: int, modes=("do_train", "do_predict", "do_export")):
    """Checks shared by both scripts; `modes` are the options of which at least one must be set."""
    training, model, output = options.training, options.model, options.output
    if not any(getattr(options, m) for m in modes):
        raise FlagError(f"At least one of {', '.join('--' + m for m in modes)} must be set.")
    if options.do_export and not output.export_dir:
        raise FlagError("--do_export needs --export_dir: the TF Serving model base directory.")
    if not output.output_dir:
        raise FlagError("--output_dir is required: where results, checkpoints and the model are written.")
    if os.path.isfile(output.output_dir):
        raise FlagError(f"--output_dir={output.output_dir} is a file; give a directory.")
    _check_writable(output.output_dir)
    _at_least({"train_batch_size": training.train_batch_size, "eval_batch_size": getattr(options, "eval_batch_size",
                                                                                          None),
               "predict_batch_size": options.predict_batch_size, "save_checkpoints_steps":
               training.save_checkpoints_steps, "max_seq_length": options.max_seq_length,
               "max_train_examples": training.max_train_examples, "gradient_accumulation_steps":
               training.gradient_accumulation_steps, "ewc_examples": training.ewc_examples}, 1)
    _at_least({"num_train_epochs": training.num_train_epochs, "learning_rate": training.learning_rate,
               "adam_epsilon": training.adam_epsilon}, 0, strict=True)
    _at_least({name: getattr(training, name) for name in ("clip_norm", "l2sp", "ewc", "aux_mlm_weight",
                                                          "unfreezing_interval", "ewc_head_steps")}, 0)
    _at_least({"eval_every_steps": training.eval_every_steps,
               "early_stopping_patience": training.early_stopping_patience}, 0)
    if (training.keep_best or training.early_stopping_patience) and not training.evaluates_during_training:
        raise FlagError("--keep_best and --early_stopping_patience choose among evaluations during training: add "
                        "--eval_every_steps=N or --eval_every_epoch.")
    if output.plot_training and not options.do_train:
        raise FlagError("--plot_training draws a training run: add --do_train (python -m tfx_transfer.plot "
                        "<output_dir> draws a finished one).")
    if training.evaluates_during_training and not options.do_train:
        raise FlagError("--eval_every_steps and --eval_every_epoch evaluate during training: add --do_train.")
    if not 0 <= training.warmup_proportion < 1:
        raise FlagError(f"--warmup_proportion={training.warmup_proportion} must be in [0, 1).")
    if options.max_seq_length > max_seq_length_of_model:
        raise FlagError(f"Cannot use sequence length {options.max_seq_length} because the BERT model was only trained "
                        f"up to sequence length {max_seq_length_of_model} (--max_seq_length).")
    if not 0 < training.layerwise_lr_decay <= 1:
        raise FlagError(f"--layerwise_lr_decay={training.layerwise_lr_decay} must be in (0, 1].")
    if training.stlr_ratio < 1:
        raise FlagError(f"--stlr_ratio={training.stlr_ratio} must be >= 1.")
    if model.hub_module_handle and (training.unfreezing != "none" or training.layerwise_lr_decay != 1
                                    or training.ewc or training.aux_mlm_weight) and \
            model.adaptation in ("full", "feature_extraction"):
        raise FlagError("--unfreezing, --layerwise_lr_decay, --ewc and --aux_mlm_weight need a transparent encoder: "
                        "a black-box --hub_module_handle has no layers to address (use --adaptation=adapters, or "
                        "convert the module with tfx_transfer.jobs.convert).")
