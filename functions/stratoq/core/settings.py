"""Frozen settings read once from the environment.

In Lambda the SAM template sets these variables; locally `stratoq dev` and the tests set
them. Every AWS call takes its endpoint from `STRATOQ_AWS_ENDPOINT_URL` (empty: real AWS),
so the same code and the same test suite run against moto, LocalStack or an AWS account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from stratoq.core.errors import ConfigError
from stratoq.core.priority import (
    DEFAULT_WEIGHTS,
    PriorityMode,
    check_keys,
    parse_mode,
    parse_weights,
)


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw}")
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Deployment settings. Build with `Settings.from_env()`; change with `with_()`."""

    region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    tasks_table: str = "stratoq-tasks"
    keys_table: str = "stratoq-keys"
    # Logical queue name -> SQS queue URL (or bare name, resolved with GetQueueUrl).
    queues: dict[str, str] = field(default_factory=lambda: {"default": "stratoq-default"})
    tasks_module: str = "stratoq.examples"
    # Schedules: rule name prefix, and the scheduler function their targets invoke.
    schedule_prefix: str = "stratoq-"
    scheduler_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stratoq-SchedulerFunction"
    # How long a claim holds a task before another worker may take it over; pollers
    # renew it by heartbeat while the task runs, so it bounds crash recovery time.
    lease_seconds: int = 30
    # Receive long-poll wait; shorter makes SIGTERM quicker, longer makes idle cheaper.
    poll_wait_seconds: int = 20
    # How pollers share receives between a queue's priority queues (stratoq.core.priority):
    # weighted (weights of high, default, low) or strict (high first, then default, low).
    priority_mode: PriorityMode = PriorityMode.WEIGHTED
    priority_weights: tuple[int, int, int] = DEFAULT_WEIGHTS
    # Messages a poller may hold beyond its free slots, at most, so receives come back
    # full and a freed slot finds its next task waiting. The poller holds only as many as
    # its slots get through in about a second (stratoq.runtime.poller.prefetch_count), so long
    # tasks get none and never hold messages idle workers could run. 0: never.
    prefetch: int = 10
    default_timeout_seconds: int = 300
    default_max_attempts: int = 5
    # Finished tasks are kept this long, then DynamoDB TTL removes them.
    retention_days: int = 30
    # How long an idempotency key (or `unique` task) holds when the request names no window.
    idempotency_window_seconds: int = 24 * 3600
    # KMS key (id, ARN or alias) under which payloads and results are envelope-encrypted
    # (stratoq.adapters.crypto). Without one, tasks are stored in clear only if allow_unencrypted
    # says so explicitly; otherwise building a task store is a configuration error.
    kms_key_id: str | None = None
    allow_unencrypted: bool = False
    # Per-API-key throttling of the local gateway (token bucket: steady requests per
    # second and burst), the defaults of the template's ApiRateLimit/ApiBurstLimit.
    api_rate_limit: float = 100.0
    api_burst_limit: int = 200
    # On AWS: the API Gateway usage plan (by name) whose throttle applies to each key;
    # every stratoq key gets a twin key in it (security.UsagePlanKeys). None locally.
    usage_plan: str | None = None
    # The tenant whose admin keys manage every tenant's keys (the bootstrap key's);
    # other tenants' admin keys manage their own keys only.
    operator_tenant: str = "default"
    # The tenant whose tasks broker bridges (stratoq.services.bridge: RabbitMQ, Kafka) enqueue.
    bridge_tenant: str = "default"
    # A worker with no handler for a task's name hands it back, unclaimed, for this long
    # (counted from the first hand-back) so that a worker that knows it can take it
    # (another fleet on the queue, a rolling deploy); then it fails as `unknown_task`.
    unknown_task_grace_seconds: int = 300
    # Enqueue sends a task's message before storing it (docs/architecture.md, "The
    # enqueue gap"): a worker that receives a message whose task is not stored waits
    # this long after the enqueue for the record, then drops it as an orphan. Must
    # exceed the longest an enqueue's write can take (retries included).
    orphan_grace_seconds: int = 300
    # Workers read which queues and task names are paused at most this often (one
    # GetItem per process per period): a task may start up to this long after a pause,
    # and a resume reaches workers this long later (stratoq.core.pauses). The operator's
    # concurrency and rate limits are cached as long (stratoq.core.limits). 0: every message.
    pause_cache_seconds: int = 5
    # The API refuses (400) a task whose name the tasks module does not register, unless
    # the request says `allow_unknown_name`. On where the API runs the workers' code.
    check_task_names: bool = False
    # Task events (services/events.py): the events queue webhooks are delivered from
    # (None: no webhooks here), the EventBridge bus events also go to (None: none), how
    # often a worker reads a tenant's webhooks, and the delivery retries (attempts, the
    # first backoff in seconds, doubling). Plain http to this machine only on the dev stack.
    events_queue_url: str | None = None
    event_bus: str | None = None
    webhook_cache_seconds: int = 5
    webhook_max_attempts: int = 8
    webhook_retry_seconds: int = 30
    webhook_allow_local_http: bool = False
    # MessageGroupId = tenant on every task message: an SQS fair queue (docs/flow-control.md
    # "Tenant fairness"). Off only for an SQS that refuses group ids on standard queues
    # (LocalStack before 4.7, as the compose file's pinned one).
    fair_queues: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e: dict[str, str] = dict(os.environ if env is None else env)
        queues: dict[str, str] = {}
        for spec in filter(None, e.get("STRATOQ_QUEUES", "").split(",")):
            name, sep, url = spec.partition("=")
            if not sep or not name.strip() or not url.strip():
                raise ConfigError(f"STRATOQ_QUEUES entries look like name=queue-url, got {spec!r}")
            queues[name.strip()] = url.strip()
        if not queues:
            queues = dict(cls().queues)
        check_keys(queues)
        return cls(
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=e.get("STRATOQ_AWS_ENDPOINT_URL") or None,
            tasks_table=e.get("STRATOQ_TASKS_TABLE", cls.tasks_table),
            keys_table=e.get("STRATOQ_KEYS_TABLE", cls.keys_table),
            queues=queues,
            tasks_module=e.get("STRATOQ_TASKS_MODULE", cls.tasks_module),
            schedule_prefix=e.get("STRATOQ_SCHEDULE_PREFIX", cls.schedule_prefix),
            scheduler_arn=e.get("STRATOQ_SCHEDULER_ARN", cls.scheduler_arn),
            lease_seconds=_int(e, "STRATOQ_LEASE_SECONDS", cls.lease_seconds, 2),
            poll_wait_seconds=_int(e, "STRATOQ_POLL_WAIT_SECONDS", cls.poll_wait_seconds),
            priority_mode=parse_mode(e.get("STRATOQ_PRIORITY_MODE") or "weighted"),
            priority_weights=parse_weights(e.get("STRATOQ_PRIORITY_WEIGHTS") or "6,3,1"),
            prefetch=_int(e, "STRATOQ_PREFETCH", cls.prefetch, 0),
            default_timeout_seconds=_int(
                e, "STRATOQ_DEFAULT_TIMEOUT_SECONDS", cls.default_timeout_seconds, 1
            ),
            default_max_attempts=_int(
                e, "STRATOQ_DEFAULT_MAX_ATTEMPTS", cls.default_max_attempts, 1
            ),
            retention_days=_int(e, "STRATOQ_RETENTION_DAYS", cls.retention_days, 1),
            idempotency_window_seconds=_int(
                e, "STRATOQ_IDEMPOTENCY_WINDOW_SECONDS", cls.idempotency_window_seconds, 1
            ),
            kms_key_id=e.get("STRATOQ_KMS_KEY_ID") or None,
            allow_unencrypted=_flag(e, "STRATOQ_ALLOW_UNENCRYPTED"),
            api_rate_limit=_float(e, "STRATOQ_API_RATE_LIMIT", cls.api_rate_limit, 0.001),
            api_burst_limit=_int(e, "STRATOQ_API_BURST_LIMIT", cls.api_burst_limit, 1),
            usage_plan=e.get("STRATOQ_USAGE_PLAN") or None,
            operator_tenant=e.get("STRATOQ_OPERATOR_TENANT") or cls.operator_tenant,
            bridge_tenant=e.get("STRATOQ_BRIDGE_TENANT") or cls.bridge_tenant,
            unknown_task_grace_seconds=_int(
                e, "STRATOQ_UNKNOWN_TASK_GRACE_SECONDS", cls.unknown_task_grace_seconds, 0
            ),
            orphan_grace_seconds=_int(
                e, "STRATOQ_ORPHAN_GRACE_SECONDS", cls.orphan_grace_seconds, 1
            ),
            check_task_names=_flag(e, "STRATOQ_CHECK_TASK_NAMES"),
            pause_cache_seconds=_int(e, "STRATOQ_PAUSE_CACHE_SECONDS", cls.pause_cache_seconds, 0),
            events_queue_url=e.get("STRATOQ_EVENTS_QUEUE") or None,
            event_bus=e.get("STRATOQ_EVENT_BUS") or None,
            webhook_cache_seconds=_int(
                e, "STRATOQ_WEBHOOK_CACHE_SECONDS", cls.webhook_cache_seconds, 0
            ),
            webhook_max_attempts=_int(
                e, "STRATOQ_WEBHOOK_MAX_ATTEMPTS", cls.webhook_max_attempts, 1
            ),
            webhook_retry_seconds=_int(
                e, "STRATOQ_WEBHOOK_RETRY_SECONDS", cls.webhook_retry_seconds, 1
            ),
            webhook_allow_local_http=_flag(e, "STRATOQ_WEBHOOK_ALLOW_LOCAL_HTTP"),
            fair_queues=(
                _flag(e, "STRATOQ_FAIR_QUEUES")
                if e.get("STRATOQ_FAIR_QUEUES", "").strip()
                else True
            ),
        )

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env` give back these settings (for children)."""
        return {
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "STRATOQ_AWS_ENDPOINT_URL": self.aws_endpoint_url or "",
            "STRATOQ_TASKS_TABLE": self.tasks_table,
            "STRATOQ_KEYS_TABLE": self.keys_table,
            "STRATOQ_QUEUES": ",".join(f"{k}={v}" for k, v in self.queues.items()),
            "STRATOQ_TASKS_MODULE": self.tasks_module,
            "STRATOQ_SCHEDULE_PREFIX": self.schedule_prefix,
            "STRATOQ_SCHEDULER_ARN": self.scheduler_arn,
            "STRATOQ_LEASE_SECONDS": str(self.lease_seconds),
            "STRATOQ_POLL_WAIT_SECONDS": str(self.poll_wait_seconds),
            "STRATOQ_PRIORITY_MODE": self.priority_mode.value,
            "STRATOQ_PRIORITY_WEIGHTS": ",".join(str(w) for w in self.priority_weights),
            "STRATOQ_PREFETCH": str(self.prefetch),
            "STRATOQ_DEFAULT_TIMEOUT_SECONDS": str(self.default_timeout_seconds),
            "STRATOQ_DEFAULT_MAX_ATTEMPTS": str(self.default_max_attempts),
            "STRATOQ_RETENTION_DAYS": str(self.retention_days),
            "STRATOQ_IDEMPOTENCY_WINDOW_SECONDS": str(self.idempotency_window_seconds),
            "STRATOQ_KMS_KEY_ID": self.kms_key_id or "",
            "STRATOQ_ALLOW_UNENCRYPTED": "1" if self.allow_unencrypted else "0",
            "STRATOQ_API_RATE_LIMIT": repr(self.api_rate_limit),
            "STRATOQ_API_BURST_LIMIT": str(self.api_burst_limit),
            "STRATOQ_USAGE_PLAN": self.usage_plan or "",
            "STRATOQ_OPERATOR_TENANT": self.operator_tenant,
            "STRATOQ_BRIDGE_TENANT": self.bridge_tenant,
            "STRATOQ_UNKNOWN_TASK_GRACE_SECONDS": str(self.unknown_task_grace_seconds),
            "STRATOQ_ORPHAN_GRACE_SECONDS": str(self.orphan_grace_seconds),
            "STRATOQ_CHECK_TASK_NAMES": "1" if self.check_task_names else "0",
            "STRATOQ_PAUSE_CACHE_SECONDS": str(self.pause_cache_seconds),
            "STRATOQ_EVENTS_QUEUE": self.events_queue_url or "",
            "STRATOQ_EVENT_BUS": self.event_bus or "",
            "STRATOQ_WEBHOOK_CACHE_SECONDS": str(self.webhook_cache_seconds),
            "STRATOQ_WEBHOOK_MAX_ATTEMPTS": str(self.webhook_max_attempts),
            "STRATOQ_WEBHOOK_RETRY_SECONDS": str(self.webhook_retry_seconds),
            "STRATOQ_WEBHOOK_ALLOW_LOCAL_HTTP": "1" if self.webhook_allow_local_http else "0",
            "STRATOQ_FAIR_QUEUES": "1" if self.fair_queues else "0",
        }
