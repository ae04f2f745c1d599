"""Shared fixtures: one moto server and one provisioned stack per test session (per xdist
worker), returned to its just-provisioned state for every test; the test tiers."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stratoq.core import registry
from stratoq.core.settings import Settings
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer

if TYPE_CHECKING:
    from stratoq.local.snapshot import Checkpoint

ROOT = Path(__file__).resolve().parents[1]
TEST_TASKS = "tests.support.tasks"
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, the directory it lives in (`pytest -m unit`)."""
    for item in items:
        parts = item.path.relative_to(ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in TIERS:
            item.add_marker(parts[1])


@pytest.fixture(scope="session", autouse=True)
def shared_clients() -> Iterator[None]:
    """One boto3 client per service, endpoint and AWS environment for the whole process.

    aws.client builds a new session for every client (sessions are not thread-safe), which
    loads the service model from disk again: about half a second per client on a busy
    machine, three or more per test. Clients are thread-safe and keep nothing between
    calls, so sharing them changes nothing a test observes. Processes a test starts build
    their own, as before.
    """
    from stratoq.adapters import aws

    build = aws.client
    cache: dict[tuple[object, ...], Any] = {}
    lock = threading.Lock()

    def shared(service: str, settings: Settings) -> Any:
        env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        key = (service, settings.region, settings.aws_endpoint_url, env)
        with lock:
            if key not in cache:
                cache[key] = build(service, settings)
            return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws, "client", shared)
        yield


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


@dataclass(frozen=True)
class Stack:
    """template.yaml provisioned on the emulator once, and how to return to that state."""

    settings: Settings
    checkpoint: Checkpoint | None  # None on an external emulator: nothing to restore


@pytest.fixture(scope="session")
def stack(emulator: str) -> Stack:
    """The stack every test starts from, provisioned once per session (per xdist worker)."""
    from stratoq.local.emulator import Emulator
    from stratoq.local.provision import provision
    from stratoq.local.snapshot import Checkpoint

    registry.load(TEST_TASKS)
    base = Settings(
        aws_endpoint_url=emulator,
        tasks_module=TEST_TASKS,
        lease_seconds=30,
        poll_wait_seconds=1,
    )
    if os.environ.get("STRATOQ_TEST_ENDPOINT"):
        return Stack(provision(base), None)
    Emulator.reset_at(emulator)
    return Stack(provision(base), Checkpoint())


@pytest.fixture
def settings(emulator: str, stack: Stack) -> Settings:
    """Fresh resources from template.yaml on the emulator, for one test.

    The embedded emulator is reset and the provisioned stack restored in memory: what
    provisioning per test gave (every table, queue, message and key as just created),
    without translating and creating the stack again.
    """
    from stratoq.local.emulator import Emulator

    if stack.checkpoint is not None:
        Emulator.reset_at(emulator)
        stack.checkpoint.restore()
    registry.load(TEST_TASKS)
    # A copy: what one test does to its settings' queue map stays with that test.
    return stack.settings.with_(queues=dict(stack.settings.queues))


@pytest.fixture
def core(settings: Settings) -> Enqueuer:
    return Services(settings).enqueuer


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
