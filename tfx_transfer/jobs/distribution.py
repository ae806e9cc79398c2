"""tf.distribute for both scripts: the strategy of Model Garden's flags (defined in jobs/flags.py), and who writes.

    --distribution_strategy={default,one_device,mirrored,multi_worker_mirrored,tpu}
    --num_gpus=N            mirrored / one_device: how many local GPUs (0 = CPU)
    --num_cpu_devices=N     split the CPU into N logical devices (mirrored over CPUs: testing, CPU-only hosts)
    --all_reduce_alg=...    mirrored: nccl | hierarchical_copy | reduce_to_one_device; multi-worker: ring | nccl
    --tpu=<address>         tpu: the TPU name or grpc:// address ('' or 'local' on a TPU VM)

Batch-size flags are global (summed over replicas); Keras splits each batch across replicas, so step counts and
the learning-rate schedule do not change with the replica count. Multi-worker topology comes from the standard
`TF_CONFIG` environment variable. Only the chief writes outputs (results, checkpoints, the final model, exports);
other workers write into a private temporary directory, and all of them resume from the chief's checkpoints, so
`--output_dir` must be on storage every worker sees (one host: a local path; several hosts: a shared file system).

The strategy must exist before TensorFlow touches a device: `strategy()` is called first thing in each job.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from typing import Optional

import tensorflow as tf
from absl import logging

from tfx_transfer import keras_compat
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import DistributionOptions

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
ALL_REDUCE = ("nccl", "hierarchical_copy", "reduce_to_one_device", "ring")

_state = {"strategy": None, "key": None, "worker_dir": None}


def _configure_cpu_devices(count: int):
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        raise FlagError(f"--num_cpu_devices={count}: TensorFlow already initialised its devices in this process; "
                        "set it in a fresh process.") from e


def _create(name: str, num_gpus: Optional[int], num_cpu_devices: Optional[int], all_reduce_alg: Optional[str],
            tpu: Optional[str]):
    if num_cpu_devices is not None:
        if num_cpu_devices < 1:
            raise FlagError(f"--num_cpu_devices={num_cpu_devices} must be >= 1.")
        _configure_cpu_devices(num_cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")  # "local" on a TPU VM
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker_mirrored":
        if all_reduce_alg not in (None, "ring", "nccl"):
            raise FlagError(f"--all_reduce_alg={all_reduce_alg} is for mirrored; multi_worker_mirrored takes ring or "
                            "nccl.")
        implementation = {None: tf.distribute.experimental.CommunicationImplementation.AUTO,
                          "ring": tf.distribute.experimental.CommunicationImplementation.RING,
                          "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}[all_reduce_alg]
        if not os.environ.get("TF_CONFIG"):
            logging.warning("multi_worker_mirrored without TF_CONFIG: training on this host alone.")
        _check_tf_config()
        keras_compat.average_scalar_logs_over_workers()
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation))
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise FlagError(f"--num_gpus={num_gpus}, but TensorFlow sees {len(gpus)} GPU(s).")
        gpus = gpus[:num_gpus]
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    if all_reduce_alg == "ring":
        raise FlagError("--all_reduce_alg=ring is for multi_worker_mirrored; mirrored takes nccl, hierarchical_copy "
                        "or reduce_to_one_device.")
    cross_device_ops = {None: None, "nccl": tf.distribute.NcclAllReduce(),
                        "hierarchical_copy": tf.distribute.HierarchicalCopyAllReduce(),
                        "reduce_to_one_device": tf.distribute.ReductionToOneDevice()}[all_reduce_alg]
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)


def strategy(options: DistributionOptions):
    """The strategy `options` ask for (created once per process and set of options)."""
    key = (options.distribution_strategy, options.num_gpus, options.num_cpu_devices, options.all_reduce_alg,
           options.tpu)
    if _state["strategy"] is None or _state["key"] != key:
        _state["strategy"] = _create(*key)
        _state["key"] = key
        _state["worker_dir"] = None
        if options.distribution_strategy != "default":
            s = _state["strategy"]
            logging.info("Distribution: --distribution_strategy=%s (%s) with %d replica(s)%s.",
                         options.distribution_strategy, type(s).__name__, s.num_replicas_in_sync,
                         "" if is_chief() else "; this worker is not the chief: it writes no outputs")
    return _state["strategy"]


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker strategy (TF_CONFIG)."""
    s = _state["strategy"]
    resolver = getattr(s, "cluster_resolver", None) if s is not None else None
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def worker_dir() -> str:
    """A private temporary directory for what a non-chief worker would otherwise write."""
    if _state["worker_dir"] is None:
        _state["worker_dir"] = tempfile.mkdtemp(prefix="tfx_transfer_worker_")
    return _state["worker_dir"]


def _check_tf_config():
    """A one-line error for a TF_CONFIG that is not JSON (TensorFlow's own message is a stack trace)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return
    try:
        json.loads(raw)
    except ValueError as e:
        raise FlagError("TF_CONFIG is not valid JSON; see the README's multi-worker example.") from e


def free_local_ports(n: int):
    """n TCP ports free on 127.0.0.1 right now: a local multi-worker cluster for TF_CONFIG (tests, benches,
    trying multi-worker on one machine)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
