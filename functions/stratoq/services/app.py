"""The composition root: every service a process needs, built once from its settings.

Stand-in with the interface the main branch's `Services` has (the members the API and
the authorizer use); the main branch's module replaces this one when the branches meet.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from stratoq.adapters.keys import KeyStore, key_store
from stratoq.adapters.store import TaskStore
from stratoq.adapters.transport import SqsTransport
from stratoq.core.schedules import ScheduleStore
from stratoq.core.settings import Settings
from stratoq.observability import metrics as _metrics
from stratoq.services.enqueue import Enqueuer, services


class Services:
    """Settings, stores, transport and metrics of a process (members built on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The module's hooks (task_cancelled, ...), as the main branch's Metrics has them.
        self.metrics: Any = _metrics

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Services:
        """Services from the process environment: the one place a process reads it."""
        return cls(Settings.from_env(None if env is None else dict(env)))

    @functools.cached_property
    def enqueuer(self) -> Enqueuer:
        return services(self.settings)

    @property
    def store(self) -> TaskStore:
        return self.enqueuer.store

    @property
    def transport(self) -> SqsTransport:
        return self.enqueuer.transport

    @functools.cached_property
    def keys(self) -> KeyStore:
        """API keys, with usage plan twins where the settings name a plan (AWS)."""
        return key_store(self.settings)

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        from stratoq.adapters import aws

        s = self.settings
        return ScheduleStore(aws.events(s), s.schedule_prefix, s.scheduler_arn)
