"""``recproxy recover --node NAME``: what a node that will not come back left running.

A node that crashes and restarts (systemd's ``Restart=on-failure``) recovers its own
recordings at start: they become ``interrupted``, every complete chunk in the store is
catalogued, and its open calls are closed.  A node that is gone for good (a dead host)
never does, so its recordings would stay ``recording`` in the shared catalog, never
dated for deletion.  This command runs that same recovery for it from any node that
shares the catalog and the store, and audits who ran it (``node.recover``).

It must only be run for a node that is down: its live recordings would be cut.  Naming
this host's own node is refused — a running node is not recovered, and a stopped one
recovers itself when it starts — and so is naming a node that is running (it holds its
name, :mod:`proxy.node_claim`); the command holds the name while it runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from .config import Config
    from .storage.catalog import Catalog
    from .storage.store import SegmentStore

RECOVER_ACTION = "node.recover"  # the audit action


class RecoverRefused(Exception):
    """The command cannot run as asked (the message says why, naming the option)."""


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the recovery did: the recordings it marked ``interrupted``, and the folders
    in the store no catalog row names (reported, kept)."""

    node: str
    interrupted: tuple[str, ...]
    uncatalogued: tuple[str, ...]


async def recover_node(
    config: Config, catalog: Catalog, store: SegmentStore, node: str, *, actor: str
) -> Recovered:
    """Recover ``node``'s recordings and calls in ``catalog`` and ``store``, as
    its own start-up would have; raises ``RecoverRefused`` for this host's own node or
    a public key that cannot be read."""
    from .node_claim import claim_node_name
    from .startup import StartupError
    from .storage import crypto

    if node == config.node.name:
        raise RecoverRefused(
            f"--node {node} is this host's own node.name: a node recovers its own "
            "recordings when it starts (restart it); --node is for another node that "
            "will not come back"
        )
    try:
        public_key = crypto.load_public_key(config.recording.public_key)
    except (OSError, crypto.StorageCryptoError) as exc:
        raise RecoverRefused(f"recording.public_key {config.recording.public_key}: {exc}") from None
    # a node that is running holds its name (proxy.node_claim): its live recordings
    # must not be cut; held here, it cannot start while its recovery runs
    them = replace(config, node=replace(config.node, name=node))
    try:
        claimed = await asyncio.to_thread(claim_node_name, them)
    except StartupError:
        raise RecoverRefused(
            f"--node {node} is running (it holds its node.name on this catalog): a running "
            "node's recordings are not recovered"
        ) from None
    try:
        return await _recover(config, catalog, store, node, public_key, actor=actor)
    finally:
        claimed.release()


async def _recover(
    config: Config,
    catalog: Catalog,
    store: SegmentStore,
    node: str,
    public_key: X25519PublicKey,
    *,
    actor: str,
) -> Recovered:
    from .calls.recording import RecordingService
    from .media.recorder import Recorder
    from .storage.writer import RecordingWriter

    # the recording service's own recovery: nothing is recorded, so its writer thread
    # and recorder only stand by
    writer = RecordingWriter(store)
    service = RecordingService(
        config.recording,
        catalog,
        Recorder(writer.sink),
        writer,
        public_key,
        retention=config.retention,
        node=config.node.name,
    )
    try:
        interrupted = await service.recover(node)
    finally:
        await asyncio.to_thread(writer.stop)
        await service.journal.close()
    await catalog.audit.append(
        actor=actor,
        action=RECOVER_ACTION,
        object=f"node:{node}",
        detail={"interrupted": len(interrupted), "by_node": config.node.name},
    )
    return Recovered(node, tuple(interrupted), tuple(service.uncatalogued))
