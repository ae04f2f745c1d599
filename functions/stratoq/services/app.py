"""The composition root: every service a process needs, built once from its settings.

Each process (a Lambda instance, a poller, the dev stack, a CLI command) builds one
`Services` and hands it down: the API, the worker, the scheduler and the CLI get what
they need from it instead of building their own clients and stores. Members are built
on first use, so an authorizer never creates an SQS client, and exactly once, under a
lock, because the dev stack's gateway serves requests from many threads.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from stratoq.adapters import aws
from stratoq.adapters.crypto import PayloadCipher, cipher_for
from stratoq.adapters.keys import KeyStore, UsagePlanKeys
from stratoq.adapters.limits import BucketStore, LimitStore, SlotStore, WaitMarks
from stratoq.adapters.locks import LockStore
from stratoq.adapters.pauses import PauseStore
from stratoq.adapters.progress import ProgressStore
from stratoq.adapters.rules import ScheduleStore
from stratoq.adapters.store import TaskStore
from stratoq.adapters.store.workflows import WorkflowStore
from stratoq.adapters.transport import SqsTransport
from stratoq.adapters.webhooks import EventBus, EventQueue, SubscriptionStore
from stratoq.core import registry
from stratoq.core.clock import now_ms
from stratoq.core.errors import ConfigError
from stratoq.core.events import SubscriptionCache
from stratoq.core.limits import NO_LIMITS, LimitsState, TtlCache
from stratoq.core.pauses import PauseCache
from stratoq.core.settings import Settings
from stratoq.observability.metrics import Metrics
from stratoq.services.enqueue import Enqueuer
from stratoq.services.events import Deliverer, Events
from stratoq.services.flow import FlowControl
from stratoq.services.handback import HandBack
from stratoq.services.leases import LeaseKeeper
from stratoq.services.runner import Runner
from stratoq.services.worker import Worker, thread_holder
from stratoq.services.workflows import Workflows

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sqs.client import SQSClient

logger = logging.getLogger(__name__)

T = TypeVar("T")
_UNSET: Any = object()


class Services:
    """Settings, clients, stores, transport, metrics and the task registry of a process."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        # No recorder by default: a one-shot command records nothing. Long-running
        # processes pass prometheus (observability.prometheus) or EMF (Lambda edge).
        self.metrics = metrics if metrics is not None else Metrics()
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, metrics: Metrics | None = None
    ) -> Services:
        """Services from the process environment: the one place a process reads it."""
        return cls(Settings.from_env(None if env is None else dict(env)), metrics=metrics)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            value = self._built.get(name, _UNSET)
            if value is _UNSET:
                value = self._built[name] = build()
            return value  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ clients
    @property
    def dynamodb(self) -> DynamoDBClient:
        return self._once("dynamodb", lambda: aws.dynamodb(self.settings))

    @property
    def sqs(self) -> SQSClient:
        return self._once("sqs", lambda: aws.sqs(self.settings))

    @property
    def events(self) -> EventBridgeClient:
        return self._once("events", lambda: aws.events(self.settings))

    # ----------------------------------------------------------------- adapters
    @property
    def cipher(self) -> PayloadCipher | None:
        """The payload cipher (None where the settings allow storing in clear)."""
        return self._once("cipher", lambda: cipher_for(self.settings))

    @property
    def store(self) -> TaskStore:
        s = self.settings
        return self._once(
            "store",
            lambda: TaskStore(
                self.dynamodb,
                s.tasks_table,
                retention_days=s.retention_days,
                cipher=self.cipher,
            ),
        )

    @property
    def transport(self) -> SqsTransport:
        s = self.settings
        return self._once("transport", lambda: SqsTransport(self.sqs, s.queues, fair=s.fair_queues))

    @property
    def locks(self) -> LockStore:
        return self._once("locks", lambda: LockStore(self.dynamodb, self.settings.tasks_table))

    @property
    def progress(self) -> ProgressStore:
        """Where inline handlers' progress reports go (slot processes build their own)."""
        return self._once(
            "progress", lambda: ProgressStore(self.dynamodb, self.settings.tasks_table)
        )

    @property
    def pause_store(self) -> PauseStore:
        return self._once(
            "pause_store", lambda: PauseStore(self.dynamodb, self.settings.tasks_table)
        )

    @property
    def pauses(self) -> PauseCache:
        """The pause state as this process's workers see it: one cache, one read per TTL."""
        ttl_ms = self.settings.pause_cache_seconds * 1000
        return self._once("pauses", lambda: PauseCache(self.pause_store.read, ttl_ms))

    @property
    def slots(self) -> SlotStore:
        return self._once("slots", lambda: SlotStore(self.dynamodb, self.settings.tasks_table))

    @property
    def limit_store(self) -> LimitStore:
        return self._once(
            "limit_store", lambda: LimitStore(self.dynamodb, self.settings.tasks_table)
        )

    @property
    def limits(self) -> TtlCache[LimitsState]:
        """The operator's limits as this process's workers see them: one cache, read at
        most once per pause cache TTL (STRATOQ_PAUSE_CACHE_SECONDS)."""
        ttl_ms = self.settings.pause_cache_seconds * 1000
        return self._once("limits", lambda: TtlCache(self.limit_store.read, NO_LIMITS, ttl_ms))

    @property
    def keys(self) -> KeyStore:
        """API keys, with usage plan twins where the settings name a plan (AWS)."""

        def build() -> KeyStore:
            s = self.settings
            usage = UsagePlanKeys(aws.apigateway(s), s.usage_plan) if s.usage_plan else None
            return KeyStore(self.dynamodb, s.keys_table, usage)

        return self._once("keys", build)

    @property
    def schedules(self) -> ScheduleStore:
        s = self.settings
        return self._once(
            "schedules",
            lambda: ScheduleStore(self.events, s.schedule_prefix, s.scheduler_arn),
        )

    @property
    def webhooks(self) -> SubscriptionStore:
        """Tenants' webhook subscriptions and their dead letters."""
        return self._once(
            "webhooks", lambda: SubscriptionStore(self.dynamodb, self.settings.tasks_table)
        )

    # ----------------------------------------------------------------- services
    @property
    def task_events(self) -> Events:
        """Task events to webhooks and the bus: one subscription cache per process."""

        def build() -> Events:
            s = self.settings
            queue = EventQueue(self.sqs, s.events_queue_url) if s.events_queue_url else None
            cache = SubscriptionCache(self.webhooks.of, s.webhook_cache_seconds * 1000)
            bus = EventBus(self.events, s.event_bus) if s.event_bus else None
            return Events(self.store, cache, queue, bus)

        return self._once("task_events", build)

    @property
    def hand_back(self) -> HandBack:
        """Re-sends of messages the workers give back (waits, hops, unknown names)."""
        return self._once(
            "hand_back",
            lambda: HandBack(
                self.transport,
                self.metrics,
                random.Random(),
                self.settings.unknown_task_grace_seconds,
            ),
        )

    @property
    def flow(self) -> FlowControl:
        """Concurrency and rate limits as the workers check them, over the shared
        operator-limits cache."""

        def build() -> FlowControl:
            db, table = self.dynamodb, self.settings.tasks_table
            stores = self.slots, BucketStore(db, table), self.limits, WaitMarks(db, table)
            return FlowControl(*stores, self.hand_back, random.Random())

        return self._once("flow", build)

    def deliverer(self) -> Deliverer:
        """Delivers the events queue's messages to webhooks."""
        s = self.settings
        return Deliverer(self.webhooks, s.webhook_max_attempts, s.webhook_retry_seconds)

    @property
    def enqueuer(self) -> Enqueuer:
        return self._once(
            "enqueuer",
            lambda: Enqueuer(
                self.store, self.transport, self.settings, self.metrics, self.task_events
            ),
        )

    @property
    def workflows(self) -> Workflows:
        """Workflows (DAGs of tasks) on the task table and queues."""

        def build() -> Workflows:
            s = self.settings
            store = WorkflowStore(
                self.dynamodb, s.tasks_table, retention_days=s.retention_days, cipher=self.cipher
            )
            return Workflows(store, self.store, self.enqueuer)

        return self._once("workflows", build)

    def load_tasks(self) -> list[str]:
        """Import the settings' tasks module(s); the names of the registered tasks."""
        registry.load(self.settings.tasks_module)
        return registry.names()

    def loaded_task_names(self) -> frozenset[str] | None:
        """The tasks module's task names, imported once per process for the API (their
        options and payload models); None when it cannot be imported and the deployment
        does not check names: an API deployed without the workers' code still enqueues,
        without the tasks' defaults (warned once). Where names are checked the import
        error stands (ConfigError), retried on the next call."""

        def load() -> frozenset[str] | None:
            try:
                return frozenset(self.load_tasks())
            except ConfigError as exc:
                if self.settings.check_task_names:
                    raise
                logger.warning(
                    "cannot import the tasks module; enqueuing without the tasks' options "
                    "and payload checks",
                    extra={"tasks_module": self.settings.tasks_module, "reason": str(exc)},
                )
                return None

        return self._once("loaded_task_names", load)

    def known_task_names(self) -> frozenset[str] | None:
        """The task names the API accepts: the tasks module's when the deployment checks
        names (`check_task_names`), else None (any name). Read once: every enqueue (each
        entry of a batch) asks."""
        if not self.settings.check_task_names:
            return None
        return self.loaded_task_names()

    def worker(
        self,
        runner: Runner,
        *,
        keeper: LeaseKeeper | None = None,
        time_left_ms: Callable[[], int] | None = None,
        clock: Callable[[], int] = now_ms,
        holder: Callable[[], str] = thread_holder,
    ) -> Worker:
        """A worker over this process's store, transport, locks and metrics. `clock`
        (epoch ms) is the wall clock except in eager tests, which skip waits by running
        it ahead (stratoq.testing). `holder` names the claimer (`Task.holder`)."""
        self.load_tasks()
        return Worker(
            self.store,
            self.transport,
            runner,
            keeper=keeper,
            time_left_ms=time_left_ms,
            clock=clock,
            locks=self.locks,
            progress=self.progress,
            metrics=self.metrics,
            unknown_task_grace_seconds=self.settings.unknown_task_grace_seconds,
            orphan_grace_seconds=self.settings.orphan_grace_seconds,
            pauses=self.pauses,
            workflows=self.workflows,
            holder=holder,
            limits=self.limits,
            events=self.task_events,
            back=self.hand_back,
            flow=self.flow,
        )

    def lease_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(
            self.store, self.transport, self.settings.lease_seconds, self.locks, self.slots
        )
