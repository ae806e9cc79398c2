"""One live run per --output_dir: a lock file holding its owner's pid, host and command line.

    with OutputDirLock(output_dir):      # raises OutputDirInUse when a live run holds it
        ...                              # the run; the lock file is removed at the end

The lock is `output_dir/.tfx_transfer.lock`, held with `fcntl.flock` for the run's lifetime: the kernel releases it
when the owner dies (even after kill -9), so a lock file left by a killed run is stale and the next run takes it over
with a warning naming the dead owner. On a file system that does not support `flock` the run goes ahead with a
warning that concurrent runs are not detected there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Optional

from absl import logging

LOCK_NAME = ".tfx_transfer.lock"


class OutputDirInUse(ValueError):
    """Another live run writes into the same --output_dir."""


def _owner(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _describe(owner: dict) -> str:
    started = owner.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else ""
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}{when}"


class OutputDirLock:
    """Context manager holding `output_dir`'s run lock (see the module docstring)."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, LOCK_NAME)
        self._fd: Optional[int] = None

    def _refuse(self, owner: dict):
        raise OutputDirInUse(f"--output_dir={os.path.dirname(self.path)} is in use by a live run ({_describe(owner)});"
                             " wait for it to finish or choose another --output_dir.")

    def acquire(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": sys.argv}
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    self._refuse(_owner(self.path))
                logging.warning("%s: the file system does not support locks (%s); a second run into this "
                                "--output_dir would not be detected.", self.path, e.strerror)
                return self
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)  # the previous owner removed the file between our open and our lock: start again
        previous = _owner(self.path)
        if previous:
            logging.warning("%s: taking over the lock of a run that is no longer alive (%s).", self.path,
                            _describe(previous))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self):
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
