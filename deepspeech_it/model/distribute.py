"""Who trains: this host's devices alone, or one host of several described by TF_CONFIG.

The hosts of a cluster run the same program in lockstep: the same plan of global batches, each host feeding its own
replicas their shares of every batch (``dataset.Shard``). Only the chief writes. What every host must see alike
comes from the chief: whether the stage is already done, the training state after a resume, the training data's
digest. A host that stops makes the others' next collective fail; that failure is reported as one line.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from functools import partial

import numpy as np

from deepspeech_it.model.dataset import Shard
from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.tf_runtime import tf
from deepspeech_it.values import Cluster

SUM = tf.distribute.ReduceOp.SUM


class ClusterError(PipelineError, RuntimeError):
    pass


def make_strategy(cluster: Cluster | None, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """Several hosts with a cluster, else mirrored over the given devices or all local GPUs; the default strategy
    on a single device."""
    if cluster is not None:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster.spec), task_type=cluster.task_type, task_id=cluster.task_index,
            rpc_layer="grpc", num_accelerators={"GPU": len(tf.config.list_physical_devices("GPU"))})
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


class Workers:
    """The strategy of this process and its place among the hosts."""

    def __init__(self, cluster: Cluster | None = None, devices: list[str] | None = None):
        self.cluster = cluster
        self.strategy = make_strategy(cluster, devices)
        self._broadcast = partial(self._run, self._compiled(_from_first_replica))
        self._sum = partial(self._run, self._compiled(_sum_over_replicas))

    @property
    def several(self) -> bool:
        return self.cluster is not None

    @property
    def chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def name(self) -> str:
        return _host_name(self.cluster)

    def distribute(self, make_dataset) -> tf.distribute.DistributedDataset:
        """MAKE_DATASET(shard) builds the input of this host's replicas."""
        def for_this_host(context: tf.distribute.InputContext):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            return make_dataset(Shard(context.input_pipeline_id * local, local, context.num_replicas_in_sync))

        return self.strategy.distribute_datasets_from_function(for_this_host)

    # -- agreement ---------------------------------------------------------------------------------------------

    def from_chief(self, value):
        """The chief's VALUE (anything JSON can hold) on every host."""
        if not self.several:
            return value
        data = np.frombuffer(json.dumps(value).encode(), np.uint8) if self.chief else np.zeros(0, np.uint8)
        (length,) = self._broadcast([np.array([data.size], np.int64)])
        data = data if self.chief else np.zeros(int(length[0]), np.uint8)
        (received,) = self._broadcast([data.astype(np.int32)])
        return json.loads(received.astype(np.uint8).tobytes())

    def all_agree(self, ok: bool) -> bool:
        """True when OK holds on every host; each host learns it, so that all of them go on or stop together."""
        if not self.several:
            return ok
        (failed,) = self._sum([np.array([0.0 if ok else 1.0], np.float32)])
        return float(failed[0]) == 0.0

    def barrier(self) -> None:
        """Returns when every host has reached it (the chief's last outputs are written before it)."""
        self.all_agree(True)

    def share_variables(self, variables) -> None:
        """Every host takes the chief's values of VARIABLES (its resumed or transferred training state)."""
        if not self.several:
            return
        for variable, value in zip(variables, self._broadcast([v.value for v in variables])):
            variable.assign(value)

    def _compiled(self, replica_fn):
        # One traced function per kind of collective; shapes vary (JSON lengths), so traces generalise them.
        return tf.function(lambda *tensors: self.strategy.run(replica_fn, args=tensors), reduce_retracing=True)

    def _run(self, compiled, values: list) -> list[np.ndarray]:
        results = compiled(*(tf.convert_to_tensor(v) for v in values))
        return [np.asarray(self.strategy.experimental_local_results(r)[0]) for r in results]


def _sum_over_replicas(*tensors):
    # tf.identity places each argument on this replica's device, which the all-reduce needs.
    context = tf.distribute.get_replica_context()
    return [context.all_reduce(SUM, tf.identity(t)) for t in tensors]


def _from_first_replica(*tensors):
    # Replica 0 is the chief's first (TensorFlow numbers the chief's replicas first); the others add zeros, so the
    # sum is the chief's value on every replica, exactly.
    context = tf.distribute.get_replica_context()
    first = tf.equal(context.replica_id_in_sync_group, 0)
    return [context.all_reduce(SUM, tf.where(first, t, tf.zeros_like(t))) for t in tensors]


def _host_name(cluster: Cluster | None) -> str:
    return "" if cluster is None else f"host {cluster.rank} of {cluster.hosts}"


@contextmanager
def one_line_errors(cluster: Cluster | None):
    """With several hosts, a TensorFlow failure (a host that stopped or cannot be reached, a port in use) becomes
    one line."""
    try:
        yield
    except tf.errors.OpError as problem:
        if cluster is None:
            raise
        # TensorFlow's message names the traced function first and goes on for many lines: keep its gist.
        text = re.sub(r"\{\{[^}]*\}\}", "", str(problem.message))
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(problem).__name__)
        raise ClusterError(f"{_host_name(cluster)}: the cluster failed ({first[:200]}); see the other hosts' "
                           "output, then start every host again to resume from the chief's checkpoint") from None
