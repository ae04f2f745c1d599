"""Eager mode: a task runs to its end inside `enqueue`, in this process, through the
production worker.

Nothing here stands in for stratoq: `Services` (the composition root) builds the real
store, transport, cipher and enqueuer; the stack is template.yaml provisioned as the dev
stack provisions it (`stratoq.local.provision`); and tasks run through the Lambda worker
function (`handlers.worker.WorkerFunction`, so `Worker.process` and its `InlineRunner`
timeout) fed by the dev stack's local event source mapping. Only AWS is replaced, by
moto's in-process backend (`moto.mock_aws`: no server, no port).

Two things differ from production, both about time:
- waits are skipped. When no message can be received and some are delayed (a retry's
  backoff, `delay_seconds`, `run_at`, a hop), the worker's clock jumps ahead to the first
  one's due time and that message is delivered at once. The worker's clock (what it
  claims, leases and records with) therefore runs ahead of the wall clock by the waits
  skipped; the handler's own time limit is real time, enforced as on Lambda.
- one process runs everything, one message at a time, so tasks never overlap.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratoq.api.common import check_name, check_payload
from stratoq.core.clock import now_ms
from stratoq.core.errors import ConfigError, StratoqError, TaskNotFoundError, WaitTimeout
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.project import project_tasks_module
from stratoq.sdk.tasks import use_client
from stratoq.services.app import Services

if TYPE_CHECKING:
    from stratoq.handlers.worker import WorkerFunction
    from stratoq.local.esm import EventSourceMapping
    from stratoq.local.snapshot import Checkpoint

TENANT = "default"
STACK = "stratoq"
# moto's account (stratoq.local.provision.LOCAL_ACCOUNT): where its queues live.
ACCOUNT = "123456789012"
# A drain that handles more messages than this is a loop (a task that enqueues itself
# for ever, say), not a test: it stops with an error instead of hanging the suite.
MAX_DELIVERIES = 10_000
# What a missing `local` extra leaves unimportable.
LOCAL_NEEDS = ("moto", "samtranslator", "yaml")


class EagerError(StratoqError):
    """Eager mode cannot do what was asked (nested use, a drain that never settles)."""


def require_local_extra(what: str) -> None:
    """Raise ConfigError saying how to install the `local` extra if it is missing."""
    from stratoq.cli.common import missing_extra

    for module in LOCAL_NEEDS:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(missing_extra(what, "local", exc)) from None


def default_tasks_module(start: Path) -> str:
    """The tasks module of the project at `start`: STRATOQ_TASKS_MODULE, else
    `[tool.stratoq] tasks` of the nearest pyproject.toml; ConfigError if neither."""
    named = os.environ.get("STRATOQ_TASKS_MODULE", "").strip()
    if named:
        return named
    found = project_tasks_module(start)
    if found:
        return found
    raise ConfigError(
        "no tasks module for stratoq's test fixtures: add `[tool.stratoq] tasks = "
        '"yourpackage.tasks"` to pyproject.toml, set STRATOQ_TASKS_MODULE, or override the '
        "`stratoq_tasks_module` fixture in conftest.py"
    )


class EagerClock:
    """Epoch milliseconds, ahead of the wall clock by the waits eager mode skipped."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms

    def pass_wall_time(self, wall_ms: float) -> None:
        """Jump so that the wall-clock moment `wall_ms` has passed for this clock too.

        A message was sent with a delay computed from this clock's time then; moving
        the offset by the wall-clock distance to its delivery time keeps this clock past
        the task's due time, however far it had already run ahead.
        """
        self.offset_ms += max(0, math.ceil(wall_ms - now_ms()))


@dataclass
class _World:
    """What one tasks module's eager mode builds once per process and reuses: the
    services (boto3 clients cost about half a second each to build) and the provisioned
    stack's state, put back at every activation."""

    settings: Settings
    services: Services
    checkpoint: Checkpoint
    clock: EagerClock
    function: WorkerFunction
    mappings: dict[str, EventSourceMapping]


_worlds: dict[str, _World] = {}
_active = threading.Lock()


def _build(tasks: str) -> _World:
    from stratoq.handlers.worker import WorkerFunction
    from stratoq.local.esm import EventSourceMapping
    from stratoq.local.provision import provision
    from stratoq.local.snapshot import Checkpoint

    # The deployment's knobs (default timeout and attempts, grace periods) as the
    # environment sets them, but never its endpoint: only the mock may answer.
    base = Settings.from_env().with_(
        aws_endpoint_url=None, tasks_module=tasks, check_task_names=True
    )
    settings = provision(base, STACK, mocked=True)
    # Taken before anything else is written: every activation starts from here.
    checkpoint = Checkpoint()
    services = Services(settings)
    services.load_tasks()
    clock = EagerClock()
    function = WorkerFunction(services, clock=clock)
    mappings = {
        key: EventSourceMapping(
            services.sqs, services.transport, key, function, region=settings.region, wait_seconds=0
        )
        for key in settings.queues
    }
    return _World(settings, services, checkpoint, clock, function, mappings)


class Eager:
    """stratoq in this process: `enqueue` runs the task (and every task it enqueues)
    to its end before it returns. Usable wherever a `Client` is for tasks: `enqueue`,
    `enqueue_request`, `get`, `wait` (and with `stratoq.sdk.tasks.use_client`)."""

    def __init__(self, world: _World) -> None:
        self._world = world
        self._draining = False

    @property
    def services(self) -> Services:
        """The composition root the tasks run with (its store, transport, settings)."""
        return self._world.services

    def enqueue(self, name: str, payload: Any = None, **options: Any) -> Task:
        """Enqueue a task as `Client.enqueue` does and run it; the task as stored at the
        end (final, unless called from inside a running task: see `enqueue_request`)."""
        return self.enqueue_request(TaskRequest(name=name, payload=payload, **options))

    def enqueue_request(self, request: TaskRequest) -> Task:
        """Enqueue a request and run every message until none is left; the stored task.

        An unknown task name is refused at once (UnknownTaskNameError, as the dev
        stack's API answers 400), unless the request says `allow_unknown_name`. Called
        from a running task, it only enqueues: the running drain takes the new task
        after the current one, so the task returned is still queued.
        """
        check_payload(request)
        check_name(request, self.services)
        created = self.services.enqueuer.enqueue(request, TENANT).task
        self.run_pending()
        return self.get(created.id)

    def get(self, task_id: str) -> Task:
        """The stored task; TaskNotFoundError if there is none."""
        task = self.services.store.get(task_id, TENANT)
        if task is None:
            raise TaskNotFoundError(f"no task {task_id}")
        return task

    def wait(self, task_id: str, timeout: float = 60.0) -> Task:
        """The task once final (anything pending runs first). WaitTimeout if it is not
        final even so: it is waiting on the task that is running now."""
        self.run_pending()
        task = self.get(task_id)
        if not task.status.final:
            raise WaitTimeout(
                f"task {task_id} is still {task.status}: in eager mode a task enqueued by "
                "a running task runs after it returns"
            )
        return task

    def list(
        self, status: TaskStatus | str | None = None, name: str | None = None
    ) -> builtins.list[Task]:
        """Every task of this test, newest first (optionally of one status or name)."""
        out: builtins.list[Task] = []
        token: str | None = None
        wanted = TaskStatus(status) if status is not None else None
        while True:
            page, token = self.services.store.list_tasks(TENANT, wanted, name, 1000, token)
            out.extend(page)
            if token is None:
                return out

    def run_pending(self) -> int:
        """Deliver every message, waits skipped, until the queues are empty; returns how
        many were handled. Re-entrant calls (from a running task) do nothing."""
        if self._draining:
            return 0
        self._draining = True
        handled = 0
        try:
            while True:
                ready = self._receivable()
                if not ready and not self._skip_ahead():
                    return handled
                for key in ready:
                    handled += self._world.mappings[key].poll_once()
                if handled > MAX_DELIVERIES:
                    raise EagerError(
                        f"eager mode handled {MAX_DELIVERIES} messages and the queues are "
                        "still not empty: does a task enqueue tasks for ever?"
                    )
        finally:
            self._draining = False

    # The dev stack's own emulator state is moto's, read in-process (as the dev stack's
    # queue age gauge reads it): which messages wait, and until when.
    def _queues(self) -> dict[str, Any]:
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[ACCOUNT][self._world.settings.region]
        transport = self.services.transport
        return {
            key: backend.queues[transport.url(key).rsplit("/", 1)[-1]]
            for key in self._world.mappings
        }

    def _receivable(self) -> builtins.list[str]:
        return [
            key
            for key, queue in self._queues().items()
            if any(m.visible and not m.delayed for m in list(queue._messages))
        ]

    def _skip_ahead(self) -> bool:
        """Deliver the next waiting message now, the clock moved past its time; False if
        no message waits."""
        waiting = [m for q in self._queues().values() for m in list(q._messages)]
        if not waiting:
            return False
        due = min(max(m.delayed_until, m.visible_at) for m in waiting)
        self._world.clock.pass_wall_time(due)
        for m in waiting:
            if max(m.delayed_until, m.visible_at) <= due:
                m.delayed_until = 0.0
                m.visible_at = 0.0
        return True


@contextlib.contextmanager
def eager(tasks: str | None = None) -> Iterator[Eager]:
    """Eager mode for a block: `with stratoq.testing.eager("myproject.tasks") as sq:`.

    `tasks` defaults to STRATOQ_TASKS_MODULE, else `[tool.stratoq] tasks` of the nearest
    pyproject.toml. While the block runs, moto mocks AWS for the whole process (boto3
    calls of the tasks themselves included) and `use_client` sends `TaskFunction.enqueue`
    here; every block starts from an empty, freshly provisioned stack.
    """
    module = tasks or default_tasks_module(Path.cwd())
    require_local_extra("stratoq.testing's eager mode")
    from moto import mock_aws

    if not _active.acquire(blocking=False):
        raise EagerError("eager mode is already active in this process; it does not nest")
    mock = mock_aws()
    try:
        # Starting the mock empties moto; the stack comes back from its checkpoint.
        mock.start()
        world = _worlds.get(module)
        if world is None:
            world = _worlds[module] = _build(module)
        else:
            world.checkpoint.restore()
        world.clock.offset_ms = 0
        client = Eager(world)
        with use_client(client):
            yield client
    finally:
        mock.stop()
        _active.release()
