"""Entry-point plumbing shared by the scripts: one-line errors and exit code 2 for bad input
(TFX_TRANSFER_TRACEBACK=1 in the environment shows the whole stack trace instead)."""

from __future__ import annotations

import os
import sys

from absl import flags

from tfx_transfer.checkpoints.report import CheckpointMismatchError
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.trainer import TrainingDiverged, TrainingInterrupted


def run_main(run, argv) -> int:
    """Calls `run()`; bad flags, data or checkpoints print `error: <one line>` to stderr and return 2."""
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        return run()
    except TrainingInterrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 128 + e.signum  # the shell's convention for "ended by signal N"
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1  # not bad input: the run itself went wrong
    except (FlagError, ValueError, FileNotFoundError, FileExistsError, KeyError, CheckpointMismatchError) as e:
        if os.environ.get("TFX_TRANSFER_TRACEBACK"):
            raise  # the whole stack trace, for bug reports
        message = str(e).strip().splitlines()
        print(f"error: {message[0] if message else type(e).__name__}", file=sys.stderr)
        return 2


def parse_and_run(flag_values, run, argv=None) -> int:
    """For command lines with a private `absl.flags.FlagValues` (hub_modules/): parses `argv` (default sys.argv)
    into `flag_values`, then `run_main(run, rest)`. Flag errors are one line and exit code 2 too."""
    argv = sys.argv if argv is None else argv
    try:
        flag_values.unparse_flags()
        rest = flag_values(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_main(run, rest)
