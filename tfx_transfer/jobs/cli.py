"""Entry-point plumbing shared by the scripts: one-line errors and exit code 2 for bad input."""

from __future__ import annotations

import sys


def run_main(run, argv) -> int:
    """Calls `run()`; bad flags, data or checkpoints print `error: <one line>` to stderr and return 2."""
    from tfx_transfer.checkpoints.report import CheckpointMismatchError
    from tfx_transfer.jobs.flags import FlagError

    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        return run()
    except (FlagError, ValueError, FileNotFoundError, FileExistsError, KeyError, CheckpointMismatchError) as e:
        message = str(e).strip().splitlines()
        print(f"error: {message[0] if message else type(e).__name__}", file=sys.stderr)
        return 2
