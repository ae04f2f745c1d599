"""OpenTelemetry tracing (issue 21, item 5): a caller's trace goes through the enqueue,
the message and the worker to the tasks a handler enqueues; off, nothing is imported.

The tasks run in eager mode (stratoq.testing: the real enqueuer and Lambda worker on
moto in-process); spans go to the SDK's in-memory exporter.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratoq.adapters.transport import TaskMessage
from stratoq.core.settings import Settings
from stratoq.observability import tracing
from stratoq.observability.logging import stream_handler
from stratoq.services.runner import Job, ProcessRunner
from stratoq.testing.eager import eager
from tests.conftest import ROOT

TASKS = "tests.support.traced_tasks"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield provider, exporter
    finally:
        tracing.use(None)


def hexid(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def test_a_trace_goes_from_the_caller_through_the_worker_to_the_child_task(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    handler = stream_handler()
    lines = io.StringIO()
    previous = handler.setStream(lines)
    try:
        with eager(TASKS) as sq:
            with provider.get_tracer("test").start_as_current_span("caller") as caller:
                parent = sq.enqueue("traced_parent", 1)
            child = sq.wait(parent.result)
    finally:
        handler.setStream(previous)
    assert child.result == 2
    finished = exporter.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}

    def one(name: str, task_id: str) -> ReadableSpan:
        [found] = [
            s
            for s in finished
            if s.name == name and (s.attributes or {}).get(tracing.TASK_ID) == task_id
        ]
        return found

    def parent_of(s: ReadableSpan) -> int | None:
        return s.parent.span_id if s.parent is not None else None

    enqueue = one("stratoq.enqueue", parent.id)
    assert parent_of(enqueue) == caller.get_span_context().span_id
    for task_id, sent_by in ((parent.id, enqueue), (child.id, one("stratoq.enqueue", child.id))):
        process = one("stratoq.process", task_id)
        # The worker's spans are children of the enqueue that sent the message.
        assert parent_of(process) == sent_by.context.span_id
        assert process.kind.name == "CONSUMER" and sent_by.kind.name == "PRODUCER"
        for step in ("stratoq.claim", "stratoq.run", "stratoq.complete"):
            assert parent_of(one(step, task_id)) == process.context.span_id
        run = one("stratoq.run", task_id)
        assert run.attributes is not None
        assert run.attributes[tracing.TASK_NAME] in {"traced_parent", "traced_child"}
        assert run.attributes[tracing.ATTEMPT] == 1 and run.attributes[tracing.QUEUE] == "default"
        assert run.attributes["stratoq.outcome"] == "success"
    # The child was enqueued from the parent's handler: in the parent's run span.
    parent_run = one("stratoq.run", parent.id)
    assert parent_of(one("stratoq.enqueue", child.id)) == parent_run.context.span_id
    # No span carries a payload or a result.
    assert not any("payload" in k or "result" in k for s in finished for k in s.attributes or {})

    logged = [json.loads(ln) for ln in lines.getvalue().splitlines() if ln.startswith("{")]
    [ran] = [ln for ln in logged if ln.get("message") == "traced child ran"]
    assert ran["trace_id"] == hexid(trace_id, 32)
    assert ran["span_id"] == hexid(one("stratoq.run", child.id).context.span_id, 16)
    done = [ln for ln in logged if ln.get("message") == "task succeeded"]
    assert len(done) == 2 and all(ln["trace_id"] == hexid(trace_id, 32) for ln in done)


def test_a_handler_in_a_slot_process_runs_in_the_run_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Pollers run handlers in slot processes: the job carries the run span's context."""
    provider, _ = spans
    from stratoq.core.registry import TaskContext

    runner = ProcessRunner(1, Settings(tasks_module=TASKS))
    try:
        with provider.get_tracer("test").start_as_current_span("run") as run:
            ctx = TaskContext("t1", "traced_headers", 1, 1, 30, "tok")
            outcome = runner.run(Job("traced_headers", None, ctx, tracing.traceparent()))
    finally:
        runner.close()
    sent = run.get_span_context()
    assert outcome.result is not None
    assert outcome.result["traceparent"].startswith(
        f"00-{hexid(sent.trace_id, 32)}-{hexid(sent.span_id, 16)}-"
    )


def test_the_message_carries_the_trace_and_a_bad_one_is_ignored() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    body = TaskMessage("t1", "default", name="x", trace=tp).encode()
    assert json.loads(body)["tp"] == tp
    assert TaskMessage.decode(body).trace == tp
    # A trace is never worth a task: the task is still delivered.
    assert TaskMessage.decode('{"id":"t1","tp":7}').trace is None
    assert "tp" not in json.loads(TaskMessage("t1", "default").encode())


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_otel_variables_turn_tracing_on(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


# The hot path of every process: enqueue (API, SDK), the worker, the Lambda edge.
RUN = """
import json, logging, sys
import stratoq.handlers.api, stratoq.handlers.worker, stratoq.runtime.poller
from stratoq.observability import tracing
from stratoq.observability.logging import configure

configure()
headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
with tracing.extracted(headers), tracing.span("stratoq.enqueue", {"stratoq.task.id": "t1"}):
    sent = tracing.traceparent()
with tracing.consumer("stratoq.process", sent, {}), tracing.span("stratoq.run"):
    logging.getLogger("stratoq.test").info("in the run span")
    with tracing.continued(sent):
        out = tracing.headers()
tracing.flush()
print(json.dumps([tracing.tracer() is not None, sent, out]))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
"""


def run(**otel: str) -> tuple[list[Any], list[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(otel)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    out = subprocess.run(
        [sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1]), out.stdout


def test_without_otel_variables_nothing_of_opentelemetry_is_imported() -> None:
    (on, sent, headers), modules, _ = run()
    assert (on, sent, headers, modules) == (False, None, {}, [])


def test_the_otel_variables_choose_the_exporter_and_the_service_name() -> None:
    """The console exporter, chosen by OTEL_TRACES_EXPORTER, writes the spans."""
    (on, sent, headers), modules, stdout = run(
        OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="shop"
    )
    assert on and "opentelemetry.sdk.trace" in modules
    # The API continued the caller's trace; the handler's requests continue the run's.
    assert sent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert '"name": "stratoq.run"' in stdout and '"service.name": "shop"' in stdout
    [line] = [json.loads(ln) for ln in stdout.splitlines() if "in the run span" in ln]
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
