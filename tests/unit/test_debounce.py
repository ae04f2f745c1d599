"""Debounce's fields, options and command-line flags (issue 19, item 5); its behaviour
against the emulator is in tests/integration/test_debounce.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stratoq.cli import main as cli
from stratoq.core.models import TaskRequest
from stratoq.core.registry import TaskContext
from stratoq.sdk.tasks import task


def test_task_option_gives_the_window_only_to_keyed_requests() -> None:
    @task("debounce.sync", debounce_seconds=30)
    def sync(payload: object) -> None: ...

    keyed = sync.with_options(debounce_key="cust-9").request({"x": 1})
    assert (keyed.debounce_key, keyed.debounce_seconds) == ("cust-9", 30)
    # Without a key the task is enqueued plainly: a window alone debounces nothing.
    plain = sync.request({"x": 1})
    assert (plain.debounce_key, plain.debounce_seconds) == (None, None)
    # A request's own window wins over the option.
    own = sync.with_options(debounce_key="k", debounce_seconds=5).request(None)
    assert own.debounce_seconds == 5


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"debounce_key": "k", "debounce_seconds": 0}, "debounce_seconds"),
        ({"debounce_key": "k", "debounce_seconds": 86401}, "debounce_seconds"),
        ({"debounce_key": "k" * 257, "debounce_seconds": 5}, "debounce_key"),
        ({"debounce_key": "", "debounce_seconds": 5}, "debounce_key"),
    ],
)
def test_bad_debounce_fields_are_refused_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest(name="echo", **fields)  # type: ignore[arg-type]
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_a_handler_cannot_spawn_a_debounced_task() -> None:
    # Refused before anything is collected: the handler's attempt fails saying why.
    ctx = TaskContext("t", "n", attempt=1, max_attempts=1, timeout_seconds=1, fencing_token="x")
    with pytest.raises(ValueError, match="debounce_key: spawned tasks cannot be debounced"):
        ctx.spawn("echo", {}, debounce_key="k", debounce_seconds=5)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["enqueue", "t", "--debounce-seconds", "0"], "a debounce window is 1 to 86400 seconds"),
        (["enqueue", "t", "--debounce-seconds", "soon"], "'soon' is not a whole number"),
        (["enqueue", "t", "--debounce-key", "k" * 257], "a key has 1 to 256 characters"),
    ],
)
def test_bad_debounce_flags_exit_2_with_a_sentence(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
