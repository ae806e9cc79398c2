"""Export the matching TF Hub preprocessing module.

    python -m hub_modules.export_preprocessor --vocab_file=vocab.txt --do_lower_case=true --seq_length=128 \\
        --export_path=/tmp/minilm_preprocess
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

# A private flag registry: importing this module never clashes with the scripts' flags.
FLAGS = flags.FlagValues()

flags.DEFINE_string("vocab_file", None, "WordPiece vocab.txt (default: the packaged MiniLM's).", flag_values=FLAGS)
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).", flag_values=FLAGS)
flags.DEFINE_integer("seq_length", 128, "Length of the packed inputs `__call__` returns.", flag_values=FLAGS)
flags.DEFINE_string("export_path", None, "Directory to write (atomically).", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --export_path.", flag_values=FLAGS)


def run():
    from hub_modules.preprocessor import export_preprocessor
    from tfx_transfer.jobs.flags import FlagError
    from tfx_transfer.pretrained import DEFAULT_MODEL, resolve_pretrained
    from tfx_transfer.text.tokenizer import BertTokenizer

    if not FLAGS.export_path:
        raise FlagError("--export_path is required.")
    if FLAGS.seq_length < 3:
        raise FlagError(f"--seq_length={FLAGS.seq_length} must be >= 3.")
    vocab_file = FLAGS.vocab_file or resolve_pretrained(DEFAULT_MODEL).vocab_file
    path = export_preprocessor(BertTokenizer(vocab_file, FLAGS.do_lower_case), FLAGS.seq_length, FLAGS.export_path,
                               FLAGS.overwrite)
    print(f"Exported the Hub preprocessor to {path}")
    return 0


def main(argv=None) -> int:
    """Parses flags from `argv` (default sys.argv), runs the export; one-line errors and exit code 2."""
    from tfx_transfer.jobs.cli import parse_and_run

    return parse_and_run(FLAGS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
