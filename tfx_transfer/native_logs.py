"""TensorFlow's native start-up lines, kept out of our scripts' consoles.

Importing TensorFlow and initialising its devices prints C++ log lines before absl's logging is set up, so
`TF_CPP_MIN_LOG_LEVEL` does not reach them: "All log messages before absl::InitializeLog() is called are written to
STDERR", the CUDA stub's "Could not find cuda drivers", the CPU-feature notice, the failed `cuInit` on a machine
without a GPU, the oneDNN notice, the cuDNN/cuFFT/cuBLAS factory registrations. For our scripts (`run_classifier.py`,
`run_squad.py`, `hub_modules/export_*`, `python -m tfx_transfer...`) the package imports TensorFlow and lists its
devices with file descriptor 2 pointing at a temporary file, then writes back every line that is not one of those:
anything else TensorFlow, Keras or we print there still shows, in order, and nothing after start-up is touched
(absl's `--verbosity` and Python warnings behave as usual).

Scripts ask for it by setting TFX_TRANSFER_QUIET_START=1 before the first tfx_transfer import (and `python -m
tfx_transfer.<module>` does it implicitly); TFX_TRANSFER_QUIET_START=0 shows everything. A library import (a
notebook, a test) is left alone.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

# Start-up lines of TensorFlow 2.x's native code: absl's pre-initialisation banner, then "<I|W|E>MMDD time pid
# file.cc:line] message" lines from the files that report devices, CPU features and plugin registration.
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SOURCES = ("cudart_stub", "cpu_feature_guard", "cuda_platform", "cuda_executor", "cuda_diagnostics", "cuda_driver",
            "cuda_dnn", "cuda_fft", "cuda_blas", "computation_placer", "port", "dso_loader", "gpu_device")
_NATIVE_LINE = re.compile(r"^[IWE]\d{4} [\d:.]+\s+\d+ (?P<source>[\w]+)\.cc:\d+\] (?P<message>.*)$")
_PORT_MESSAGES = ("oneDNN custom operations are on",)
_CONTINUATIONS = ("To enable the following instructions:",)  # the CPU-feature notice's second line
_OTHER = ("TF-TRT Warning: Could not find TensorRT",)


def is_startup_noise(line: str) -> bool:
    """Whether `line` is one of TensorFlow's native start-up lines (see the module docstring)."""
    line = line.rstrip("\r\n")
    if line == _BANNER or line.startswith(_CONTINUATIONS) or any(o in line for o in _OTHER):
        return True
    match = _NATIVE_LINE.match(line)
    if not match or match.group("source") not in _SOURCES:
        return False
    if match.group("source") == "port":
        return match.group("message").startswith(_PORT_MESSAGES)
    return True


def requested() -> bool:
    value = os.environ.get("TFX_TRANSFER_QUIET_START")
    if value is not None:
        return value == "1"
    return bool(sys.argv) and sys.argv[0] == "-m"  # `python -m tfx_transfer.x` while it imports the package


def quiet_tensorflow_start():
    """Imports TensorFlow and lists its devices with the start-up lines filtered out (idempotent)."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the scripts' level for the native logs after start-up
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the device start-up lines (cuInit, ...) come now, not later
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not is_startup_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


if requested():
    quiet_tensorflow_start()
