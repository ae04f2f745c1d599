"""OpenTelemetry tracing, off unless the standard OTEL_* variables turn it on.

A trace goes from the caller through the API (its `traceparent` header), the enqueue
(the message's `tp` field, a W3C traceparent) and the worker (process, claim, run,
complete) to the tasks a handler enqueues, whose requests carry the run span's context
(docs/tracing.md).

Off (no OTEL_TRACES_EXPORTER, no OTLP endpoint, or OTEL_SDK_DISABLED=true), nothing
here imports OpenTelemetry: every function below is a check of one module global, so
the hot path pays neither imports nor spans. On, the SDK (the `otel` extra) is set up
on first use with the exporter the variables name; the SDK itself reads the rest
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*, OTEL_BSP_*,
OTEL_TRACES_SAMPLER).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from stratoq.observability.logging import stream_handler

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from stratoq.core.models import Task

logger = logging.getLogger(__name__)

SCOPE = "stratoq"
DEFAULT_SERVICE = "stratoq"
# The message field and HTTP header that carry a span context (W3C Trace Context).
TRACEPARENT = "traceparent"

# Attribute names of stratoq's spans (never a payload, a result or a key).
TASK_ID = "stratoq.task.id"
TASK_NAME = "stratoq.task.name"
QUEUE = "stratoq.queue"
ATTEMPT = "stratoq.task.attempt"

_lock = threading.Lock()
_decided = False
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# Reusable and re-entrant: what every function answers while tracing is off.
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces: an exporter other than `none`, or
    an OTLP endpoint (the exporter is then OTLP), unless OTEL_SDK_DISABLED=true."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracer() -> Tracer | None:
    """stratoq's tracer, or None when tracing is off (decided once per process)."""
    global _decided, _tracer, _provider
    if _decided:
        return _tracer
    with _lock:
        if not _decided:
            if wanted():
                _provider = _start()
                if _provider is not None:
                    _tracer = _provider.get_tracer(SCOPE)
                    stream_handler().addFilter(_trace_ids)
            _decided = True
    return _tracer


def use(provider: TracerProvider | None) -> None:
    """Trace with `provider` from now on, whatever the environment says (None: off).

    For tests (an in-memory exporter) and programs that build their own provider.
    """
    global _decided, _tracer, _provider
    with _lock:
        _provider = provider
        _tracer = provider.get_tracer(SCOPE) if provider is not None else None
        _decided = True
        if provider is not None:
            stream_handler().addFilter(_trace_ids)
        else:
            stream_handler().removeFilter(_trace_ids)


def flush() -> None:
    """Export the spans ended so far (a Lambda instance may be frozen once it answers)."""
    if _provider is not None:
        _provider.force_flush()


def span(
    name: str, attributes: Mapping[str, Any] | None = None, kind: str = "internal"
) -> contextlib.AbstractContextManager[Span | None]:
    """A span, current in the block, child of the current one (None while off).

    `kind`: internal, producer, consumer, server or client.
    """
    t = tracer()
    if t is None:
        return _OFF
    from opentelemetry.trace import SpanKind

    return t.start_as_current_span(name, attributes=_clean(attributes), kind=SpanKind[kind.upper()])


def consumer(
    name: str, traceparent: str | None, attributes: Mapping[str, Any] | None = None
) -> contextlib.AbstractContextManager[Span | None]:
    """A consumer span whose parent is the span context a message carried (a new
    trace if it carried none), whatever span is current here."""
    t = tracer()
    if t is None:
        return _OFF
    from opentelemetry.trace import SpanKind

    return t.start_as_current_span(
        name, context=_extract(traceparent), attributes=_clean(attributes), kind=SpanKind.CONSUMER
    )


def note(current: Span | None, attributes: Mapping[str, Any]) -> None:
    """Set attributes on a span from `span()`/`consumer()` (nothing while off)."""
    if current is not None:
        current.set_attributes(_clean(attributes))


def task_attributes(task: Task, **more: Any) -> dict[str, Any]:
    """A task's span attributes: id, name, queue and attempt (never its payload), and
    `more` as `stratoq.<key>`."""
    return {
        TASK_ID: task.id,
        TASK_NAME: task.name,
        QUEUE: task.queue,
        ATTEMPT: task.attempts,
        **{f"stratoq.{k}": v for k, v in more.items()},
    }


def traceparent() -> str | None:
    """The current span's context as a W3C traceparent (None while off or outside a span)."""
    if tracer() is None:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def headers() -> dict[str, str]:
    """Headers that continue the current trace in an HTTP request (the SDK client's).

    Also when stratoq's tracing is off but the program uses OpenTelemetry itself (it is
    imported): a caller's own trace then goes on in the API and the workers.
    """
    if tracer() is None and "opentelemetry.trace" not in sys.modules:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def _attached(context: Any) -> Iterator[None]:
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def continued(traceparent: str | None) -> contextlib.AbstractContextManager[None]:
    """Make a span context carried from elsewhere current in the block (a task slot's
    process runs its handler in the run span of the worker that sent it the job).

    Given one, it is made current even where this process does not trace (a slot
    whose parent was given its provider by `use`): the handler's enqueues carry it on.
    """
    if traceparent is None:
        return _OFF
    tracer()  # set up first where the OTEL_* variables ask: the handler's spans export
    return _attached(_extract(traceparent))


def extracted(request_headers: Mapping[str, Any] | None) -> contextlib.AbstractContextManager[None]:
    """Make the span context of an HTTP request's headers current in the block (the
    API: an enqueue continues its caller's trace)."""
    if tracer() is None or not request_headers:
        return _OFF
    found = {k.lower(): v for k, v in request_headers.items() if isinstance(v, str)}
    if TRACEPARENT not in found:
        return _OFF
    from opentelemetry import propagate

    return _attached(propagate.extract(found))


def _extract(traceparent: str | None) -> Any:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate

    if traceparent is None:
        # An empty context, not the current one: a message with no trace starts one.
        return otel_context.Context()
    return propagate.extract({TRACEPARENT: traceparent}, context=otel_context.Context())


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OpenTelemetry refuses None values (with a warning per attribute).
    return {k: v for k, v in (attributes or {}).items() if v is not None}


def _trace_ids(record: logging.LogRecord) -> bool:
    """Log filter: the current span's trace and span ids on every record (JSON logs
    carry them as `trace_id` and `span_id`, the way OpenTelemetry writes them)."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        record.trace_id = format(ctx.trace_id, "032x")
        record.span_id = format(ctx.span_id, "016x")
    return True


def _start() -> TracerProvider | None:
    """The SDK's provider with the exporters OTEL_TRACES_EXPORTER names, made the
    global one too (unless the program set its own), so a handler's spans join ours."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed "
            "(pip install 'stratoq[otel]'); tracing stays off"
        )
        return None
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; what it is
    # given wins over them, so the default name is given only when they name none.
    resource = Resource.create({} if named else {"service.name": DEFAULT_SERVICE})
    provider = TracerProvider(resource=resource)
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


def _exporters() -> list[SpanExporter]:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    out: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",")):
        try:
            if name == "otlp":
                out.append(_otlp())
            elif name == "console":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                out.append(ConsoleSpanExporter())
            elif name and name != "none":
                logger.warning(
                    "unknown OTEL_TRACES_EXPORTER value; stratoq knows otlp, console and none",
                    extra={"exporter": name},
                )
        except ImportError as exc:
            logger.warning(
                "the exporter OTEL_TRACES_EXPORTER names is not installed",
                extra={"exporter": name, "missing": exc.name},
            )
    return out


def _otlp() -> SpanExporter:
    # The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS and _TIMEOUT.
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol.strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter as GrpcExporter,
        )

        exporter: SpanExporter = GrpcExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
