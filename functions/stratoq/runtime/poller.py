"""The container worker: long-poll SQS, run tasks in process slots, renew leases.

`stratoq worker --concurrency N --processes P` starts P poller processes of N slots
each. A poller receives for its free slots plus a prefetch of at most about one second's
worth of tasks (`prefetch_count`), so receives come back full (10 messages) under load
and a freed slot finds its next task waiting, while long tasks get no prefetch and never
hold messages another worker could run. Slots take prefetched messages tenant by tenant
(runtime/turns.py), so a flood's prefetch does not hold up a quiet tenant's task.
SIGTERM (or Ctrl-C): stop receiving, hand prefetched messages back at once, let running
tasks finish within the grace period, then stop and release what is left, and exit 0.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time

from stratoq.adapters.transport import Delivery
from stratoq.core.policy import heartbeat_seconds
from stratoq.core.priority import (
    PRIORITIES,
    PriorityChooser,
    expand,
    idle_counts,
    logical_queues,
    split_key,
)
from stratoq.runtime.batcher import Batcher
from stratoq.runtime.listeners import Listeners
from stratoq.runtime.turns import Turns, tenant_of
from stratoq.services.app import Services
from stratoq.services.handback import Action, Disposition
from stratoq.services.runner import ProcessRunner, Runner

logger = logging.getLogger(__name__)

# A priority queue found empty is not asked again for this long (unless every queue is):
# one wasted request per queue per second at most while another queue has a backlog, and
# a message arriving on it waits at most this long behind the others.
EMPTY_RECHECK_SECONDS = 1.0
# A prefetched message waits for a slot about this long at most (at the recent pace).
PREFETCH_SECONDS = 1.0
# Outcomes of deliveries whose handler ran: only these time the prefetch.
TIMED_STATUSES = frozenset({"succeeded", "retrying", "failed"})


def prefetch_count(limit: int, slots: int, task_seconds: float | None) -> int:
    """How many messages a poller may hold beyond its slots: about PREFETCH_SECONDS of
    work at `task_seconds` per task (a recent average), at most `limit`; none until a
    task has been timed."""
    if limit <= 0 or task_seconds is None:
        return 0
    return min(limit, int(slots * PREFETCH_SECONDS / max(task_seconds, 1e-3)))


class Poller:
    """One poller process: a receive loop, N slot threads, a heartbeat, batched acks."""

    def __init__(
        self,
        services: Services,
        concurrency: int,
        queues: list[str] | None = None,
        runner: Runner | None = None,
        shutdown_grace: float = 30.0,
    ) -> None:
        settings = services.settings
        self.settings = settings
        self.metrics = services.metrics
        self.concurrency = concurrency
        # Names given (logical queues or single priority-queue keys) -> the SQS queues
        # to read, highest priority first; metrics are labelled by logical queue.
        self.keys = expand(list(settings.queues), queues or list(settings.queues))
        self.queues = logical_queues(self.keys)
        self.chooser = PriorityChooser(self.keys, settings.priority_mode, settings.priority_weights)
        self._empty_until: dict[str, float] = {}
        # Several queues: an idle poller long-polls them all at once (see _receive).
        self._listeners = Listeners(self._long_poll, self._arrived)
        self.shutdown_grace = shutdown_grace
        self.task_names = services.load_tasks()
        self.transport = services.transport
        for q in self.keys:
            self.transport.url(q)  # fail at start, not at the first message
        self.keeper = services.lease_keeper()
        self.runner = runner or ProcessRunner(concurrency, settings)
        self.worker = services.worker(self.runner, keeper=self.keeper)
        self._stopping = threading.Event()
        self._drained = threading.Event()
        # Messages received and not finished (running or prefetched), under _cond.
        self._held = 0
        self._task_seconds: float | None = None
        self._cond = threading.Condition()
        # Prefetched messages wait highest priority first, then by their tenant's turn
        # (runtime/turns.py: a flood's messages do not hold up another tenant's), then in
        # arrival order: (priority rank, turn, arrival, delivery).
        self._work: queue.PriorityQueue[tuple[int, int, int, Delivery | None]] = (
            queue.PriorityQueue()
        )
        self._arrivals = itertools.count()
        self._turns = Turns()
        # An ack may wait: the outcome is already recorded and the message stays invisible
        # for its lease, so up to 250 ms fills DeleteMessageBatch calls under load (SQS
        # deletes per task 0.27 -> 0.10 in the benchmark) at no cost to correctness.
        self._acks = Batcher(self.transport.delete, "stratoq-acks", linger=0.25)
        self._queue_names = {self.transport.url(q): split_key(q)[0] for q in self.keys}
        self._rank = {self.transport.url(q): _priority_rank(q) for q in self.keys}
        self.processed = 0

    def stop(self) -> None:
        """Stop receiving; running tasks finish (see `run`), tasks not started yet go
        back (a prefetched one, or one sleeping out the second before its token)."""
        self._stopping.set()
        self.worker.stopping.set()
        self._listeners.wake()
        with self._cond:
            self._cond.notify_all()

    def run(self) -> None:
        """Poll until `stop()`; then drain within the grace period and return."""
        slots = [
            threading.Thread(target=self._slot, name=f"stratoq-slot-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        self.metrics.slots_configured(self.concurrency)
        self.metrics.tasks_known(self.queues, self.task_names)
        for t in slots:
            t.start()
        beat = threading.Thread(target=self._heartbeat, name="stratoq-heartbeat", daemon=True)
        beat.start()
        logger.info(
            "poller started",
            extra={
                "queues": self.keys,
                "priority_mode": self.chooser.mode.value,
                "concurrency": self.concurrency,
                "pid": os.getpid(),
            },
        )
        try:
            self._receive_loop()
        finally:
            self._hand_back_prefetched()
            for _ in slots:
                self._enqueue_work(None)
            deadline = time.monotonic() + self.shutdown_grace
            for t in slots:
                t.join(max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t in slots):
                logger.warning("grace period over: stopping and releasing running tasks")
                self.worker.shutting_down.set()
                self.keeper.abort_all()
                for t in slots:
                    t.join(30)
            # Idle long polls still in flight end within their wait, as the one queue's
            # long poll does; what they bring now goes straight back (`_arrived`).
            self._listeners.join(self.settings.poll_wait_seconds + 10)
            self._drained.set()
            self._acks.close()
            self.runner.close()
            logger.info("poller stopped", extra={"processed": self.processed})

    def _capacity(self) -> int:
        return self.concurrency + prefetch_count(
            self.settings.prefetch, self.concurrency, self._task_seconds
        )

    def _receive_loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                # Receive once a full batch fits, or a slot is idle with nothing waiting.
                while not self._stopping.is_set():
                    room = self._capacity() - self._held
                    if room > 0 and (room >= 10 or self._held < self.concurrency):
                        break
                    self._cond.wait()
                # Let a few more slots free up before asking, so that one receive brings
                # a fuller batch (fewer requests per task) without idling slots for long
                # (50 ms: receives per task 0.29 -> 0.17 in the benchmark, and faster).
                deadline = time.monotonic() + 0.05
                while not self._stopping.is_set():
                    capacity = self._capacity()
                    left = deadline - time.monotonic()
                    if capacity - self._held >= min(10, capacity) or left <= 0:
                        break
                    self._cond.wait(left)
                want = min(10, self._capacity() - self._held)
                free = max(0, self.concurrency - self._held)
            if self._stopping.is_set():
                return
            if want <= 0:
                continue
            try:
                got = self._receive(want, free)
            except Exception:
                logger.exception("receive failed; retrying")
                self._stopping.wait(1.0)
                continue
            if self._stopping.is_set() and got:
                # Received during shutdown: hand them straight back to other workers.
                self.transport.change_visibility((d, 0) for d in got)
                return
            with self._cond:
                self._held += len(got)
            for d in got:
                self._enqueue_work(d)

    def _higher_found_empty(self, key: str, now: float) -> bool:
        rank = _priority_rank(key)
        return all(
            self._empty_until.get(k, 0.0) > now for k in self.keys if _priority_rank(k) < rank
        )

    def _enqueue_work(self, delivery: Delivery | None) -> None:
        if delivery is None:
            self._work.put((len(PRIORITIES), 0, next(self._arrivals), None))
            return
        rank = self._rank.get(delivery.queue_url, 1)
        turn = self._turns.tag(tenant_of(delivery.body))
        self._work.put((rank, turn, next(self._arrivals), delivery))

    def _hand_back_prefetched(self) -> None:
        """Make messages no slot has started visible again now, for other workers."""
        back: list[Delivery] = []
        while True:
            try:
                *_, delivery = self._work.get_nowait()
            except queue.Empty:
                break
            if delivery is not None:
                back.append(delivery)
        self._give_back(back)

    def _give_back(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        with self._cond:
            self._held -= len(deliveries)
            self._cond.notify()
        try:
            self.transport.change_visibility((d, 0) for d in deliveries)
        except Exception:
            # They reappear when their visibility timeout ends instead.
            logger.exception("handing back prefetched messages failed")

    def _receive(self, want: int, free: int) -> list[Delivery]:
        """One batch from the queue the chooser picks (see stratoq.core.priority).

        With one queue this is the plain long poll. With several, a long poll on one
        would leave a high-priority message waiting up to poll_wait_seconds behind it,
        so the queues are asked without waiting (WaitTimeSeconds=0), in the chooser's
        order, skipping those found empty within EMPTY_RECHECK_SECONDS and those a long
        poll is already waiting on. Only when none has anything does the poller wait,
        on all of them at once: one long poll per queue, in parallel (`Listeners`),
        until any brings messages (handed on by `_arrived`, so this returns none) or
        ends. A message arriving on any queue of an idle poller is so received as soon
        as SQS hands it out, for one request per queue per poll_wait_seconds.

        Prefetch (`want` beyond the `free` slots) is only taken from a queue whose higher
        priorities were just found empty: otherwise a weighted turn of the low queue
        would bring a batch of low tasks that then run before the high ones behind them.
        A queue that may only prefetch while no slot is free is asked after the others.
        The idle long polls follow the same rule (`idle_counts`).
        """
        lease = self.settings.lease_seconds
        wait = self.settings.poll_wait_seconds
        if len(self.keys) == 1:
            return self.transport.receive(self.keys[0], want, wait, lease)
        now = time.monotonic()

        def ask(key: str, count: int) -> list[Delivery]:
            got = self.transport.receive(key, count, 0, lease)
            if not got:
                self._empty_until[key] = now + EMPTY_RECHECK_SECONDS
            return got

        order = self.chooser.order()
        later: list[str] = []
        for key in order:
            if self._empty_until.get(key, 0.0) > now or self._listeners.busy(key):
                continue
            count = want if self._higher_found_empty(key, now) else min(want, free)
            if count == 0:
                later.append(key)
            elif got := ask(key, count):
                return got
        # Highest priority first, each now after every higher queue was found empty.
        for key in sorted(later, key=_priority_rank):
            if got := ask(key, want):
                return got
        self._listeners.wait(idle_counts(self.keys, want, free), timeout=wait + 10)
        return []

    def _long_poll(self, key: str, count: int) -> list[Delivery]:
        wait = self.settings.poll_wait_seconds
        return self.transport.receive(key, count, wait, self.settings.lease_seconds)

    def _arrived(self, key: str, asked: int, got: list[Delivery]) -> None:
        """A long poll of `_receive`'s ended: its messages join the prefetched ones."""
        if len(got) < asked:
            # It had no more when SQS answered: the next wait on it is a long poll
            # again, not a short receive first (one request per task at light load).
            self._empty_until[key] = time.monotonic() + EMPTY_RECHECK_SECONDS
        else:
            self._empty_until.pop(key, None)
        if not got:
            return
        if self._stopping.is_set():
            # Received during shutdown: hand them straight back to other workers.
            self.transport.change_visibility((d, 0) for d in got)
            return
        with self._cond:
            self._held += len(got)
            self._cond.notify()
        for d in got:
            self._enqueue_work(d)

    def _slot(self) -> None:
        while True:
            _, turn, _, delivery = self._work.get()
            if delivery is None:
                return
            self._turns.started(turn)
            if self._stopping.is_set():
                # Stopping: a prefetched message is not started but handed back.
                self._give_back([delivery])
                continue
            self.metrics.slot_taken()
            started = time.monotonic()
            disposition: Disposition | None = None
            try:
                disposition = self.worker.process(delivery)
                self._apply(delivery, disposition)
            except Exception:
                # The message reappears after its visibility timeout and is retried.
                logger.exception("processing a message failed", extra={"id": delivery.message_id})
            finally:
                self.metrics.slot_released()
                took = time.monotonic() - started
                with self._cond:
                    self._held -= 1
                    self.processed += 1
                    if disposition is not None and disposition.status in TIMED_STATUSES:
                        # A moving average of tasks that ran sizes the prefetch (deliveries
                        # that were only passed on would make tasks look instant).
                        last = self._task_seconds
                        self._task_seconds = took if last is None else last + 0.1 * (took - last)
                    self._cond.notify()

    def _apply(self, delivery: Delivery, disposition: Disposition) -> None:
        self.metrics.message_handled(
            self._queue_names.get(delivery.queue_url, "?"), disposition.status
        )
        if disposition.action is Action.ACK:
            self._acks.put(delivery)
        elif disposition.action is Action.RELEASE:
            self.transport.change_visibility([(delivery, disposition.delay)])

    def _heartbeat(self) -> None:
        # Runs until every slot is done, so draining tasks keep their leases.
        interval = heartbeat_seconds(self.settings.lease_seconds)
        self.metrics.worker_heartbeat()
        while not self._drained.wait(interval):
            self.metrics.worker_heartbeat()
            try:
                self.keeper.beat()
            except Exception:
                logger.exception("heartbeat failed")


def _priority_rank(key: str) -> int:
    return PRIORITIES.index(split_key(key)[1])
