"""TF Serving's model directory layout: <export_base>/<version>/, versions appear atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Optional


def existing_versions(export_base: str):
    if not os.path.isdir(export_base):
        return []
    return sorted(int(name) for name in os.listdir(export_base) if name.isdigit())


@contextlib.contextmanager
def new_version_directory(export_base: str, version: Optional[int] = None):
    """Yields a temporary directory that becomes `<export_base>/<version>` when the block succeeds.

    TF Serving watches `export_base` and loads the highest version: it must never see a half-written one, so the
    SavedModel is written beside it (a hidden name TF Serving ignores) and renamed. Versions are never overwritten.
    """
    export_base = os.path.abspath(os.fspath(export_base))
    if os.path.isfile(export_base):
        raise FileExistsError(f"Export base {export_base!r} is a file; give a directory.")
    os.makedirs(export_base, exist_ok=True)
    versions = existing_versions(export_base)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"Export version {version!r} must be a positive integer.")
    final = os.path.join(export_base, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Version {version} already exists at {final!r}; versions are never overwritten "
                              "(omit the version to get the next one).")
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_base)
    try:
        yield tmp, version
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, final)
