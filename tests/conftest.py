"""Shared fixtures: one moto server per test session, reset and provisioned per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoq.core import registry
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer, services

ROOT = Path(__file__).resolve().parents[1]
TEST_TASKS = "tests.support.tasks"
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, the directory it lives in (`pytest -m unit`)."""
    for item in items:
        parts = item.path.relative_to(ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in TIERS:
            item.add_marker(parts[1])


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    """AWS endpoint: STRATOQ_TEST_ENDPOINT (LocalStack, ...) or an embedded moto server."""
    external = os.environ.get("STRATOQ_TEST_ENDPOINT")
    if external:
        yield external
        return
    from stratoq.local.emulator import Emulator

    emu = Emulator()
    yield emu.url
    emu.stop()


@pytest.fixture
def settings(emulator: str) -> Settings:
    """Fresh resources from template.yaml on the emulator, for one test."""
    from stratoq.local.emulator import Emulator
    from stratoq.local.provision import provision

    if not os.environ.get("STRATOQ_TEST_ENDPOINT"):
        Emulator.reset_at(emulator)
    registry.load(TEST_TASKS)
    base = Settings(
        aws_endpoint_url=emulator,
        tasks_module=TEST_TASKS,
        lease_seconds=30,
        poll_wait_seconds=1,
    )
    return provision(base)


@pytest.fixture
def core(settings: Settings) -> Enqueuer:
    return services(settings)


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a stratoq process under test (finds this checkout and tests/)."""
    env = dict(os.environ)
    env.update(settings.to_env())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    env["PYTHONUNBUFFERED"] = "1"
    # `stratoq worker` serves /metrics on 9464 by default: off unless a test asks for it.
    env["STRATOQ_METRICS_PORT"] = "0"
    env.update(extra)
    return env


PYTHON = sys.executable
