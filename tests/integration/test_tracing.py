"""Tracing across the emulator (issue 21, item 5): a caller's span -> the SDK client's
request (traceparent header) -> the API's enqueue -> the SQS message -> Worker.process
-> a child task the handler enqueues over HTTP, all one trace (in-memory exporter)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tests.support.traced_tasks  # noqa: F401  (registers the traced_* tasks)
from stratoq.core.settings import Settings
from stratoq.observability import tracing
from stratoq.sdk.client import Client
from stratoq.sdk.tasks import use_client
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.gateway import serve_api
from tests.support.pump import apply


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(made)
    try:
        yield made, exporter
    finally:
        tracing.use(None)


def test_a_trace_spans_the_api_the_message_the_worker_and_the_child_task(
    core: Enqueuer, settings: Settings, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    made, exporter = provider
    worker = Worker(core.store, core.transport, InlineRunner())
    bodies: list[dict[str, object]] = []
    with serve_api(settings) as served:
        client = Client(served.url, served.key)
        with made.get_tracer("test").start_as_current_span("caller") as caller:
            parent = client.enqueue("traced_parent", 1)
        # The worker runs outside the caller's span: only the message links them.
        with use_client(client):
            deadline = time.monotonic() + 30
            while client.get(parent.id).status != "succeeded":
                assert time.monotonic() < deadline, client.get(parent.id)
                for d in core.transport.receive("default", 10, 1, 30):
                    bodies.append(json.loads(d.body))
                    apply(core, d, worker.process(d))
            child_id = client.get(parent.id).result
            while client.get(child_id).status != "succeeded":
                assert time.monotonic() < deadline, client.get(child_id)
                for d in core.transport.receive("default", 10, 1, 30):
                    bodies.append(json.loads(d.body))
                    apply(core, d, worker.process(d))
    finished = exporter.get_finished_spans()

    def one(name: str, task_id: str) -> ReadableSpan:
        [found] = [
            s
            for s in finished
            if s.name == name and (s.attributes or {}).get(tracing.TASK_ID) == task_id
        ]
        return found

    trace_id = caller.get_span_context().trace_id
    enqueue = one("stratoq.enqueue", parent.id)
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == caller.get_span_context().span_id
    # The message carries the enqueue span's context, the worker's span continues it.
    by_id = {b["id"]: b for b in bodies}
    assert by_id[parent.id]["tp"] == (
        f"00-{trace_id:032x}-{enqueue.context.span_id:016x}-{enqueue.context.trace_flags:02x}"
    )
    process = one("stratoq.process", parent.id)
    assert process.parent is not None and process.parent.span_id == enqueue.context.span_id
    run = one("stratoq.run", parent.id)
    for step in ("stratoq.claim", "stratoq.run", "stratoq.complete"):
        stepped = one(step, parent.id).parent
        assert stepped is not None and stepped.span_id == process.context.span_id
    # The handler's enqueue went over HTTP: its request carried the run span's context.
    child_enqueue = one("stratoq.enqueue", child_id)
    assert child_enqueue.parent is not None and child_enqueue.parent.span_id == run.context.span_id
    child_process = one("stratoq.process", child_id)
    assert child_process.parent is not None
    assert child_process.parent.span_id == child_enqueue.context.span_id
    assert {s.context.trace_id for s in finished} == {trace_id}
