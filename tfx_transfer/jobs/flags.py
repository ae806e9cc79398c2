"""absl flags shared by run_classifier.py and run_squad.py, and their validation.

google-research/bert's names and defaults come first, so old command lines work; tfx_transfer's own flags
follow. TPU-only flags are accepted and ignored with a warning. `validate_*` raise `FlagError` with one line that
names the flag, its value and the fix; the scripts print it and exit with code 2.
"""

from __future__ import annotations

import os

from absl import flags, logging

from tfx_transfer.adaptation.adapter_config import KINDS
from tfx_transfer.adaptation.strategies import STRATEGIES

FLAGS = flags.FLAGS
TPU_FLAGS = ("use_tpu", "tpu_name", "tpu_zone", "gcp_project", "master", "num_tpu_cores", "iterations_per_loop")


class FlagError(ValueError):
    """A bad flag value; the message is one line naming the flag, the value and the fix."""


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
    define.DEFINE_enum("adapter_kind", None, list(KINDS), "Adapter kind (default: houlsby for --adaptation=adapters, "
                      "lora for --adaptation=lora).")
    define.DEFINE_integer("lora_rank", 8, "LoRA rank r.")
    define.DEFINE_integer("top_k", 2, "Layers trained by --adaptation=top_k.")
    define.DEFINE_string("assignment_map", None, "JSON assignment map applied before the checkpoint's built-in rules.")
    define.DEFINE_integer("max_train_examples", None, "Use only the first N training examples.")
    define.DEFINE_integer("seed", 0, "Random seed (initialisation, dropout, data order).")
    define.DEFINE_bool("jit_compile", False, "Compile training and inference steps with XLA.")
    define.DEFINE_bool("run_eagerly", False, "Debugging: run training steps eagerly (no tf.function).")
    define.DEFINE_bool("bucket_by_length", True, "Pad each batch to a length bucket instead of max_seq_length.")
    define.DEFINE_float("weight_decay", 0.01, "Decoupled weight decay (not applied to LayerNorm and biases).")
    define.DEFINE_string("export_dir", None, "Export a TF Serving SavedModel (raw-text signatures) under this base "
                         "directory as <export_dir>/<version>/, after training or with --do_export.")
    define.DEFINE_bool("do_export", False, "Export the model named by --init_checkpoint (e.g. a finished run's "
                       "output_dir/final) without training; needs --export_dir.")
    define.DEFINE_integer("export_version", None, "Version number of the export (default: the next one).")
    from tfx_transfer.jobs import distribution

    distribution.define_flags(define)
    define_optimisation_flags()


def define_optimisation_flags():
    """How and when weights update (issue 9): schedule, clipping, accumulation, discriminative rates, unfreezing,
    regularisation toward the pretrained weights, auxiliary masked-LM."""
    from tfx_transfer.adaptation.schedules import SCHEDULES
    from tfx_transfer.adaptation.unfreezing import UNFREEZING

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


def warn_ignored_tpu_flags():
    for name in TPU_FLAGS:
        if FLAGS[name].present:
            logging.warning("--%s is a TPU flag of google-research/bert; it is accepted and ignored here.", name)


def _check_writable(directory: str):
    """Creates `directory` and writes a probe file in it, so permission problems show before hours of training."""
    import tempfile

    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise FlagError(f"--output_dir={directory}: cannot write there ({e.strerror or e}); choose another "
                        "directory or fix its permissions.") from None


def validate_common(max_seq_length_of_model: int, modes=("do_train", "do_predict", "do_export")):
    """Checks shared by both scripts; `modes` are the flags of which at least one must be set."""
    if not any(FLAGS[m].value for m in modes):
        raise FlagError(f"At least one of {', '.join('--' + m for m in modes)} must be set.")
    if FLAGS.do_export and not FLAGS.export_dir:
        raise FlagError("--do_export needs --export_dir: the TF Serving model base directory.")
    if not FLAGS.output_dir:
        raise FlagError("--output_dir is required: where results, checkpoints and the model are written.")
    if os.path.isfile(FLAGS.output_dir):
        raise FlagError(f"--output_dir={FLAGS.output_dir} is a file; give a directory.")
    _check_writable(FLAGS.output_dir)
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "save_checkpoints_steps",
                 "max_seq_length"):
        if name in FLAGS and FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise FlagError(f"--{name}={FLAGS[name].value} must be >= 1.")
    if FLAGS.num_train_epochs <= 0:
        raise FlagError(f"--num_train_epochs={FLAGS.num_train_epochs} must be > 0.")
    if FLAGS.learning_rate <= 0:
        raise FlagError(f"--learning_rate={FLAGS.learning_rate} must be > 0.")
    if not 0 <= FLAGS.warmup_proportion < 1:
        raise FlagError(f"--warmup_proportion={FLAGS.warmup_proportion} must be in [0, 1).")
    if FLAGS.max_seq_length > max_seq_length_of_model:
        raise FlagError(f"Cannot use sequence length {FLAGS.max_seq_length} because the BERT model was only trained up "
                        f"to sequence length {max_seq_length_of_model} (--max_seq_length).")
    if FLAGS.max_train_examples is not None and FLAGS.max_train_examples < 1:
        raise FlagError(f"--max_train_examples={FLAGS.max_train_examples} must be >= 1.")
    if not 0 < FLAGS.layerwise_lr_decay <= 1:
        raise FlagError(f"--layerwise_lr_decay={FLAGS.layerwise_lr_decay} must be in (0, 1].")
    for name in ("clip_norm", "l2sp", "ewc", "aux_mlm_weight", "unfreezing_interval", "ewc_head_steps"):
        if FLAGS[name].value < 0:
            raise FlagError(f"--{name}={FLAGS[name].value} must be >= 0.")
    if FLAGS.adam_epsilon <= 0:
        raise FlagError(f"--adam_epsilon={FLAGS.adam_epsilon} must be > 0.")
    if FLAGS.gradient_accumulation_steps < 1:
        raise FlagError(f"--gradient_accumulation_steps={FLAGS.gradient_accumulation_steps} must be >= 1.")
    if FLAGS.ewc_examples < 1:
        raise FlagError(f"--ewc_examples={FLAGS.ewc_examples} must be >= 1.")
    try:
        epochs = [float(e) for e in FLAGS.sequential_unfreezing_epochs]
    except ValueError:
        epochs = []
    if len(epochs) != 2 or min(epochs) < 0:
        raise FlagError(f"--sequential_unfreezing_epochs={','.join(FLAGS.sequential_unfreezing_epochs)} must be two "
                        "non-negative numbers n,k (epochs of head-only, then of all-but-embeddings training).")
    if FLAGS.stlr_ratio < 1:
        raise FlagError(f"--stlr_ratio={FLAGS.stlr_ratio} must be >= 1.")
    if FLAGS.hub_module_handle and (FLAGS.unfreezing != "none" or FLAGS.layerwise_lr_decay != 1 or FLAGS.ewc
                                    or FLAGS.aux_mlm_weight) and FLAGS.adaptation in ("full", "feature_extraction"):
        raise FlagError("--unfreezing, --layerwise_lr_decay, --ewc and --aux_mlm_weight need a transparent encoder: "
                        "a black-box --hub_module_handle has no layers to address (use --adaptation=adapters, or "
                        "convert the module with tfx_transfer.checkpoints.convert).")
