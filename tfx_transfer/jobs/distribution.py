"""tf.distribute for both scripts: Model Garden's flags, the strategy, and who writes.

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
import tempfile
from typing import Optional

from absl import logging

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
ALL_REDUCE = ("nccl", "hierarchical_copy", "reduce_to_one_device", "ring")

_state = {"strategy": None, "key": None, "worker_dir": None}


def define_flags(define):
    define.DEFINE_enum("distribution_strategy", "default", list(STRATEGIES),
                       "tf.distribute strategy: default (one device), one_device, mirrored (the local GPUs or "
                       "--num_cpu_devices), multi_worker_mirrored (workers from TF_CONFIG), tpu. Batch sizes are "
                       "global.")
    define.DEFINE_integer("num_gpus", None, "GPUs for mirrored/one_device (default: all visible; 0 = CPU).")
    define.DEFINE_integer("num_cpu_devices", None, "Split the CPU into this many logical devices (mirrored on CPUs).")
    define.DEFINE_enum("all_reduce_alg", None, list(ALL_REDUCE), "Gradient all-reduce: mirrored nccl / "
                       "hierarchical_copy / reduce_to_one_device, multi_worker_mirrored ring / nccl.")
    define.DEFINE_string("tpu", None, "TPU name or grpc:// address for --distribution_strategy=tpu ('local' on a TPU "
                         "VM).")


def _flags():
    from tfx_transfer.jobs.flags import FLAGS

    return FLAGS


def _configure_cpu_devices(count: int):
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        from tfx_transfer.jobs.flags import FlagError

        raise FlagError(f"--num_cpu_devices={count}: TensorFlow already initialised its devices in this process; "
                        "set it in a fresh process.") from None


def _create(name: str, num_gpus: Optional[int], num_cpu_devices: Optional[int], all_reduce_alg: Optional[str],
            tpu: Optional[str]):
    import tensorflow as tf

    from tfx_transfer.jobs.flags import FlagError

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
        _patch_keras_multi_worker_logs()
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


def _patch_keras_multi_worker_logs():
    """Keras 3's TF trainer averages each step's logs over workers with `strategy.reduce("MEAN", v, axis=0)`, which
    fails for the scalar losses and metrics under MultiWorkerMirroredStrategy ("Invalid reduction dimension 0 for
    input with 0 dimensions"; tensorflow/tensorflow#72388): `fit` cannot run a single multi-worker step. We wrap
    Keras's `reduce_per_replica` so that scalars are averaged with `axis=None` (the same mean, over replicas);
    everything else goes to Keras unchanged. Installed only when a multi-worker strategy is created."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "_tfx_transfer_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        multi_worker = keras_tf_trainer._collective_all_reduce_multi_worker(strategy)
        if not multi_worker or reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)

        def reduce(v):
            if isinstance(v, tf.distribute.DistributedValues) or isinstance(v, tf.Tensor):
                rank = v.values[0].shape.rank if isinstance(v, tf.distribute.DistributedValues) else v.shape.rank
                if rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        return keras_tf_trainer.tree.map_structure(reduce, values)

    reduce_per_replica._tfx_transfer_patch = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def strategy():
    """The strategy the flags ask for (created once per process and flag set)."""
    FLAGS = _flags()
    key = (FLAGS.distribution_strategy, FLAGS.num_gpus, FLAGS.num_cpu_devices, FLAGS.all_reduce_alg, FLAGS.tpu)
    if _state["strategy"] is None or _state["key"] != key:
        _state["strategy"] = _create(*key)
        _state["key"] = key
        _state["worker_dir"] = None
        if FLAGS.distribution_strategy != "default":
            s = _state["strategy"]
            logging.info("Distribution: --distribution_strategy=%s (%s) with %d replica(s)%s.",
                         FLAGS.distribution_strategy, type(s).__name__, s.num_replicas_in_sync,
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
    except ValueError:
        from tfx_transfer.jobs.flags import FlagError

        raise FlagError("TF_CONFIG is not valid JSON; see the README's multi-worker example.") from None


def free_local_ports(n: int):
    """n TCP ports free on 127.0.0.1 right now: a local multi-worker cluster for TF_CONFIG (tests, benches,
    trying multi-worker on one machine)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
