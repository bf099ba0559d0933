"""Multi-node data-parallel training: Keras 3's distribution API on JAX's distributed runtime.

One process per node. Each joins the runtime (``jax.distributed.initialize``)
with the coordinator at node 0's address, the model is replicated over every
device of every node (``keras.distribution.DataParallel``), and each process
feeds its own shard of the files (``auto_shard_dataset = False``): the
per-process batches form one global batch, so the loss, the gradients and the
metrics are global and every node ends with the same weights.

Why JAX: Keras 3 on TensorFlow's MultiWorkerMirroredStrategy forms the
cluster and then fails inside ``model.fit`` (keras#20585). On CPU, JAX's
collectives between processes need gloo.

A node that fails or disappears ends the run on every node in bounded time:
a process that dies mid-step breaks the others' collectives at once, and the
runtime's heartbeats (HEARTBEAT_S) catch a node that just stops answering.
``python -m model train`` reads its place in the cluster from --nodes,
--node-index and --coordinator, or from TRAINBOX_NODES, TRAINBOX_NODE and
TRAINBOX_COORDINATOR (set by trainbox's run.sh).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from model.errors import UsageError

ENV_NODES, ENV_NODE, ENV_COORDINATOR = "TRAINBOX_NODES", "TRAINBOX_NODE", "TRAINBOX_COORDINATOR"
# Seconds after which a node that stopped sending heartbeats is taken for dead
# (JAX's default: 100). The runtime then ends every node's process.
HEARTBEAT_S = int(os.environ.get("TRAINBOX_HEARTBEAT_S", "20"))
# Seconds each node waits for all the others to join at the start (JAX's default: 300).
JOIN_S = int(os.environ.get("TRAINBOX_JOIN_S", "300"))
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class Cluster:
    """This process's place in the run: node ``node`` of ``nodes``, the coordinator at ``coordinator``."""

    nodes: int = 1
    node: int = 0
    coordinator: str | None = None

    @property
    def multi(self) -> bool:
        return self.nodes > 1

    @property
    def primary(self) -> bool:
        """Node 0: it writes what the run keeps (the others' run folders are their own)."""
        return self.node == 0


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a whole number") from None


def cluster(nodes: int | None = None, node: int | None = None, coordinator: str | None = None, environ=None) -> Cluster:
    """The cluster from the flags, else the environment (TRAINBOX_*), else one node; checked."""
    env = os.environ if environ is None else environ
    if nodes is None:
        nodes = _int(env[ENV_NODES], ENV_NODES) if env.get(ENV_NODES) else 1
    if node is None:
        node = _int(env[ENV_NODE], ENV_NODE) if env.get(ENV_NODE) else 0
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    if nodes < 1:
        raise UsageError(f"--nodes {nodes}: need at least 1")
    if not 0 <= node < nodes:
        raise UsageError(f"--node-index {node} is not one of 0..{nodes - 1} (--nodes {nodes})")
    if nodes > 1:
        if not coordinator:
            raise UsageError(
                f"--nodes {nodes} needs --coordinator HOST:PORT (node 0's address, the same on every node)"
            )
        m = _ADDRESS.match(coordinator)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise UsageError(f"--coordinator {coordinator!r} is not HOST:PORT")
    return Cluster(nodes, node, coordinator)


def check_backend(c: Cluster) -> None:
    """A multi-node run needs Keras on JAX (KERAS_BACKEND=jax)."""
    if c.multi:
        import keras

        if keras.backend.backend() != "jax":
            raise UsageError(
                f"--nodes {c.nodes} trains on Keras's JAX backend, not {keras.backend.backend()}: "
                "set KERAS_BACKEND=jax (`remote train` does)"
            )


def join(c: Cluster) -> int:
    """Join JAX's distributed runtime and replicate the model over every device of
    every node; the number of devices in all. One node: nothing to join, 1."""
    if not c.multi:
        return 1
    import jax
    import keras

    # CPU devices' collectives between processes (GPUs use NCCL whatever this says).
    # Before initialize: asking for the devices first would start XLA without the cluster.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=c.coordinator,
        num_processes=c.nodes,
        process_id=c.node,
        coordinator_bind_address=bind_address(c.coordinator),
        initialization_timeout=JOIN_S,
        heartbeat_timeout_seconds=HEARTBEAT_S,
        shutdown_timeout_seconds=max(HEARTBEAT_S, 30),
    )
    # JAX's runtime takes SIGTERM for its own preemption notice and swallows it:
    # a node told to stop (`remote stop`, the box shutting down) trained on
    # (seen: still running 90 s after the TERM). Give the signal back its
    # default: the node ends, and its peers end through the heartbeat.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devices = keras.distribution.list_devices()
    dist = keras.distribution.DataParallel(devices=devices)
    dist.auto_shard_dataset = False  # each node feeds its own shard (shard below)
    keras.distribution.set_distribution(dist)
    return len(devices)


def leave() -> None:
    """Leave the cluster, every node together once the model is saved, and go back
    to one process's own devices (the report predicts on node 0 alone).

    The runtime's shutdown is a barrier of every node: left to the end of the
    process, a node that finished waited there for node 0's report, and a
    report longer than the shutdown timeout aborted both nodes."""
    import jax
    import keras

    keras.distribution.set_distribution(None)
    jax.distributed.shutdown()


def bind_address(coordinator: str) -> str | None:
    """Where node 0's coordinator listens: its own address when that is a loopback
    or private one (bindable there: the sandbox's 127.0.0.1, a VPC address), so
    the port is not open on every interface; None (JAX's default, all of them)
    for a public or named address, which a NATed instance cannot bind."""
    import ipaddress

    host, port = coordinator.rsplit(":", 1)
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return coordinator if ip.is_loopback or ip.is_private else None


def shard(files: Sequence, c: Cluster) -> list:
    """This node's share of the files: every nodes-th one, the same count on every
    node (each step is one batch from every node: a node with more would wait
    for a step the others never take). Up to nodes - 1 files are left out."""
    files = list(files)
    if not c.multi:
        return files
    keep = len(files) - len(files) % c.nodes
    return files[c.node : keep : c.nodes]


def local_batch(global_batch: int, devices: int, c: Cluster) -> int:
    """Each node's share of the global batch (which must split evenly over every device)."""
    if global_batch % devices:
        raise UsageError(
            f"--batch-size {global_batch} (the global batch) does not split over the {devices} devices of "
            f"{c.nodes} nodes: give a multiple of {devices}"
        )
    return global_batch // c.nodes
