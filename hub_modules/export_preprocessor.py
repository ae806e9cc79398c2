"""Export the matching TF Hub preprocessing module.

    python -m hub_modules.export_preprocessor --pretrained=all-MiniLM-L6-v2 --seq_length=128 \\
        --export_path=/tmp/minilm_preprocess      # the model's own tokenizer settings
    python -m hub_modules.export_preprocessor --vocab_file=vocab.txt --do_lower_case=true --export_path=...
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFX_TRANSFER_QUIET_START", "1")  # tfx_transfer/native_logs.py

from absl import flags  # noqa: E402

from hub_modules.preprocessor import export_preprocessor  # noqa: E402
from tfx_transfer.jobs.cli import parse_and_run  # noqa: E402
from tfx_transfer.jobs.errors import FlagError  # noqa: E402
from tfx_transfer.pretrained import DEFAULT_MODEL, resolve_pretrained  # noqa: E402
from tfx_transfer.text.tokenizer import BertTokenizer  # noqa: E402
from tfx_transfer.text.tokenizer_files import vocab_file_settings  # noqa: E402

# A private flag registry: importing this module never clashes with the scripts' flags.
FLAGS = flags.FlagValues()

flags.DEFINE_string("pretrained", None, "Model whose tokenizer to export, with the settings its producer recorded "
                    "(directory or packaged name; default all-MiniLM-L6-v2 unless --vocab_file is given).",
                    flag_values=FLAGS)
flags.DEFINE_string("vocab_file", None, "A WordPiece vocab.txt instead of --pretrained.", flag_values=FLAGS)
flags.DEFINE_bool("do_lower_case", None, "Lower-case and strip accents (default: the model's casing, or the "
                  "vocabulary's).", flag_values=FLAGS)
flags.DEFINE_integer("seq_length", 128, "Length of the packed inputs `__call__` returns.", flag_values=FLAGS)
flags.DEFINE_string("export_path", None, "Directory to write (atomically).", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --export_path.", flag_values=FLAGS)


def run():
    if not FLAGS.export_path:
        raise FlagError("--export_path is required.")
    if FLAGS.seq_length < 3:
        raise FlagError(f"--seq_length={FLAGS.seq_length} must be >= 3.")
    if FLAGS.vocab_file and FLAGS.pretrained:
        raise FlagError("--vocab_file and --pretrained both name the vocabulary; pass only one.")
    if FLAGS.vocab_file:
        settings = vocab_file_settings(FLAGS.vocab_file, FLAGS.do_lower_case)
    else:
        files = resolve_pretrained(FLAGS.pretrained or DEFAULT_MODEL)
        settings = files.tokenizer if FLAGS.do_lower_case is None else files.tokenizer.with_casing(FLAGS.do_lower_case)
    path = export_preprocessor(BertTokenizer.from_settings(settings), FLAGS.seq_length, FLAGS.export_path,
                               FLAGS.overwrite)
    print(f"Exported the Hub preprocessor to {path}")
    return 0


def main(argv=None) -> int:
    """Parses flags from `argv` (default sys.argv), runs the export; one-line errors and exit code 2."""
    return parse_and_run(FLAGS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
