"""A node's pulse: heartbeats that renew its leases, and the rescue of dead nodes' jobs.

Theory of operation
-------------------
Every ``lease_seconds / 3`` a node (``ade serve`` or ``ade worker``) does, in order:

1. **heartbeat**: its row's ``last_heartbeat`` and the lease deadline of each job it runs move
   to ``now() + lease_seconds`` (database clock); the jobs someone asked to cancel come back
   (the fallback when the ``ade_cancel`` notification was missed).
2. **rescue**: running jobs whose lease deadline passed belong to a node that stopped
   heartbeating (SIGKILL, power loss, network cut). Any surviving node fences each one (a new
   lease token, :meth:`ClusterQueue.take_over`) and records it ``error`` with a message naming
   the node. Two survivors racing for one job: the token compare-and-set lets one win.
3. reservations of dead nodes are freed (their submissions never answered 202).

A heartbeat three times per lease tolerates two missed beats before anyone acts. A node that
cannot reach the database for a whole lease stops its own running jobs (``lost_contact``): by
then other nodes may already have rescued them, and a job must not keep running where nobody
can record its end. :class:`Pulse` holds that decision, free of I/O.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Awaitable, Callable

import attrs
import trio

from ade.cluster.queue import ClusterQueue, ExpiredLease
from ade.errors import LeaseLost, StoreUnavailable

__all__ = ["Pulse", "default_node_id", "run_pulse"]

logger = logging.getLogger(__name__)


def default_node_id() -> str:
    """Host name plus a random suffix: unique per process, readable in ``ade nodes list``.
    Set ``ADE_NODE_ID`` for an id that survives restarts."""
    host = socket.gethostname().split(".")[0] or "node"
    return f"{host}-{secrets.token_hex(3)}"


@attrs.define
class Pulse:
    """When is this node out of contact long enough to stop its own jobs? No I/O."""

    lease_seconds: float
    last_contact: float | None = None
    fenced_self: bool = False

    @property
    def interval(self) -> float:
        return self.lease_seconds / 3

    def succeeded(self, now: float) -> None:
        self.last_contact = now
        self.fenced_self = False

    def failed(self, now: float) -> bool:
        """True once per outage, when the lease has run out since the last contact."""
        if self.last_contact is None or self.fenced_self:
            return False
        if now - self.last_contact >= self.lease_seconds:
            self.fenced_self = True
            return True
        return False


async def run_pulse(
    queue: ClusterQueue,
    pulse: Pulse,
    *,
    running: Callable[[], set[str]],
    cancel_requested: Callable[[list[str]], Awaitable[None]],
    rescue: Callable[[ExpiredLease], Awaitable[None]],
    lost_contact: Callable[[], None],
    lost: Callable[[str], None],
    tick: Callable[[], None] = lambda: None,
) -> None:
    """Heartbeat and rescue until cancelled. ``running()`` is the ids of the jobs running
    here; ``rescue`` is called for each expired lease this node fenced (it records the job's
    end); ``lost(job_id)`` stops a local job another node fenced (this node was paused past
    its lease); ``tick`` runs after every round (the dispatcher uses it as its slow poll)."""
    while True:
        now = trio.current_time()
        held = running()
        try:
            beat = await queue.heartbeat(len(held))
        except StoreUnavailable as exc:
            logger.warning("heartbeat failed: %s", exc.message)
            if pulse.failed(now):
                logger.error(
                    "no heartbeat for %.0f s (ADE_LEASE_SECONDS): stopping this node's jobs; "
                    "other nodes will record them interrupted",
                    pulse.lease_seconds,
                )
                lost_contact()
        else:
            pulse.succeeded(now)
            if beat.cancel_requested:
                await cancel_requested(beat.cancel_requested)
            await _stop_fenced(queue, held - beat.renewed, lost)
            await _rescue_expired(queue, rescue)
        tick()
        await trio.sleep(pulse.interval)


async def _stop_fenced(
    queue: ClusterQueue, unrenewed: set[str], lost: Callable[[str], None]
) -> None:
    """A running job whose lease the heartbeat did not renew was either claimed after the
    heartbeat's snapshot (still ours) or fenced by another node: the lease check tells."""
    for job_id in unrenewed:
        try:
            await queue.store.check_lease(job_id)
        except LeaseLost:
            logger.warning("job %s was taken over by another node; stopping it here", job_id)
            lost(job_id)
        except StoreUnavailable as exc:
            logger.warning("could not check the lease of job %s: %s", job_id, exc.message)


async def _rescue_expired(
    queue: ClusterQueue, rescue: Callable[[ExpiredLease], Awaitable[None]]
) -> None:
    try:
        for lease in await queue.expired():
            if await queue.take_over(lease):
                logger.warning(
                    "node %s stopped responding: recording its job %s interrupted",
                    lease.node_id,
                    lease.job_id,
                )
                await rescue(lease)
        await queue.forget_dead_reservations()
    except StoreUnavailable as exc:
        logger.warning("rescue round failed: %s", exc.message)
