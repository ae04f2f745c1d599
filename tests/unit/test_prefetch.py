"""How many messages a poller holds beyond its slots (stratoq.runtime.poller.prefetch_count)."""

from __future__ import annotations

import pytest

from stratoq.core.errors import ConfigError
from stratoq.core.settings import Settings
from stratoq.runtime.poller import prefetch_count


def test_no_prefetch_before_a_task_was_timed_or_when_turned_off() -> None:
    assert prefetch_count(10, 8, None) == 0
    assert prefetch_count(0, 8, 0.01) == 0


def test_short_tasks_prefetch_up_to_the_limit() -> None:
    # 8 slots at 0.2 s a task get through 40 tasks a second: the limit of 10 applies.
    assert prefetch_count(10, 8, 0.2) == 10
    assert prefetch_count(25, 8, 0.2) == 25


def test_prefetch_is_about_a_seconds_worth_of_work() -> None:
    assert prefetch_count(10, 2, 0.5) == 4
    assert prefetch_count(10, 4, 1.0) == 4


def test_long_tasks_get_no_prefetch() -> None:
    # A message prefetched behind 60 s tasks would wait that long: none is taken.
    assert prefetch_count(10, 8, 60.0) == 0
    assert prefetch_count(10, 1, 1.5) == 0


def test_a_zero_duration_does_not_divide_by_zero() -> None:
    assert prefetch_count(10, 1, 0.0) == 10


def test_settings_read_the_prefetch_limit() -> None:
    assert Settings.from_env({}).prefetch == 10
    assert Settings.from_env({"STRATOQ_PREFETCH": "0"}).prefetch == 0
    settings = Settings.from_env({"STRATOQ_PREFETCH": "3"})
    assert Settings.from_env(settings.to_env()).prefetch == 3
    with pytest.raises(ConfigError, match="STRATOQ_PREFETCH must be at least 0"):
        Settings.from_env({"STRATOQ_PREFETCH": "-1"})
