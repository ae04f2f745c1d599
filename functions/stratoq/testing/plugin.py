"""stratoq's pytest plugin (entry point `pytest11`): fixtures for a project's own tests.

- `stratoq_eager`: eager mode for one test (`stratoq.testing.eager`): `enqueue` runs the
  task in-process, through the production worker, before it returns.
- `stratoq_stack`: `stratoq dev` started once per test session, as a `Client`.
- `stratoq_tasks_module`: the tasks module both use (override it in conftest.py).

Loaded by every pytest run where stratoq is installed, so importing it costs nothing
and needs nothing beyond pytest: the fixtures import what they use when a test asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from stratoq.sdk.client import Client
    from stratoq.testing.eager import Eager


def _fail(exc: Exception) -> NoReturn:
    # A sentence for the user, not a traceback through the plugin (nor the error it
    # was raised while handling).
    raise pytest.fail.Exception(str(exc), pytrace=False) from None


@pytest.fixture(scope="session")
def stratoq_tasks_module(request: pytest.FixtureRequest) -> str:
    """The module(s) defining the project's tasks: STRATOQ_TASKS_MODULE, else
    `[tool.stratoq] tasks` of the nearest pyproject.toml from pytest's rootdir.

    Override it in conftest.py (session-scoped, as `stratoq_stack` uses it)::

        @pytest.fixture(scope="session")
        def stratoq_tasks_module() -> str:
            return "myproject.tasks"
    """
    from stratoq.core.errors import ConfigError
    from stratoq.testing.eager import default_tasks_module

    try:
        return default_tasks_module(request.config.rootpath)
    except ConfigError as exc:
        _fail(exc)


@pytest.fixture
def stratoq_eager(stratoq_tasks_module: str) -> Iterator[Eager]:
    """Eager mode for this test: an `Eager` whose `enqueue` runs the task to its end
    (retries included, their delays skipped) and returns the stored task; also the
    client of `TaskFunction.enqueue` while the test runs. Every test starts from an
    empty stack; AWS is mocked (moto) for the whole process during the test."""
    from stratoq.core.errors import ConfigError
    from stratoq.testing.eager import eager

    try:
        manager = eager(stratoq_tasks_module)
        client = manager.__enter__()
    except ConfigError as exc:
        _fail(exc)
    try:
        yield client
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def stratoq_stack(
    stratoq_tasks_module: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Client]:
    """`stratoq dev` with the project's tasks, started once for the session on free
    ports with its state under pytest's temporary directory, stopped (its processes
    with it) when the session ends; a `Client` of its API with its admin key."""
    from stratoq.core.errors import ConfigError
    from stratoq.sdk.client import Client
    from stratoq.testing.eager import require_local_extra
    from stratoq.testing.stack import DevProcess, StackError

    try:
        require_local_extra("stratoq.testing's stratoq_stack")
    except ConfigError as exc:
        _fail(exc)
    stack = DevProcess(
        stratoq_tasks_module, tmp_path_factory.mktemp("stratoq-stack"), request.config.rootpath
    )
    try:
        facts = stack.start()
    except StackError as exc:
        _fail(exc)
    try:
        yield Client(facts["api_url"], facts["api_key"])
    finally:
        stack.stop()
