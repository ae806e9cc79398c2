"""TensorFlow settings tfx_transfer asks for before TensorFlow is imported (the package imports this module first).

oneDNN kernels on every x86-64 CPU: TensorFlow's Linux wheels turn their oneDNN (MKL) kernels on by default only on
CPUs with AVX-512 VNNI / BF16 or AMX; on other x86 CPUs (AVX2 ones, such as AMD EPYC hosts without AVX-512) matmuls
and the training step run through Eigen. Measured on such a host (2 cores, AVX2, 2026-12-07; run_classifier.py on
SST-2-8k, MiniLM, alternating, 2 runs each): steady training 88.6 / 86.3 -> 106.3 / 106.9 ex/s, the whole process
119.1 / 119.9 -> 105.2 / 100.2 s, the same dev accuracy; peak RSS 1.83 -> 1.94 GiB. Where TensorFlow already uses
oneDNN nothing changes. `TF_ENABLE_ONEDNN_OPTS=0` in the environment keeps Eigen; the setting only applies when
TensorFlow has not been imported yet (a program that imports tensorflow first keeps TensorFlow's own choice).
"""

from __future__ import annotations

import os
import platform
import sys

X86_64 = ("x86_64", "amd64")


def apply():
    """Sets TF_ENABLE_ONEDNN_OPTS=1 on x86-64 unless the environment says otherwise or TensorFlow is imported."""
    if "tensorflow" not in sys.modules and platform.machine().lower() in X86_64:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


apply()
