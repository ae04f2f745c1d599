"""The HTTP API (API Gateway REST proxy integration), on Powertools' event handler.

Routes parse and validate (pydantic), check the caller's scope, call the core
(`Enqueuer`, `TaskStore`, `KeyStore`) and shape the answer. The authorizer has already
turned `x-api-key` into a tenant and scopes in `requestContext.authorizer`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stratoq import __version__
from stratoq.adapters import aws
from stratoq.adapters.keys import KeyStore, key_store, manages_every_tenant
from stratoq.adapters.store import to_ms
from stratoq.adapters.transport import queue_stats
from stratoq.api.contract import (
    CreatedKey,
    Deleted,
    Health,
    KeyList,
    KeyRecord,
    OpenApiDocument,
    QueueList,
    RedriveResult,
    RetryResult,
    ScheduleList,
    TaskBatch,
    TaskPage,
    responses,
)
from stratoq.core.errors import (
    EnqueueError,
    InvalidRequestError,
    InvalidStateError,
    NotFoundError,
    PayloadTooLargeError,
    StratoqError,
    UnknownQueueError,
)
from stratoq.core.models import (
    MAX_PAYLOAD_BYTES,
    QUEUE_PATTERN,
    Task,
    TaskRequest,
    TaskStatus,
    payload_size,
    utcnow,
)
from stratoq.core.schedules import (
    SCHEDULE_NAME,
    ExpressionError,
    Fire,
    Schedule,
    ScheduleSpec,
    ScheduleStore,
)
from stratoq.core.settings import Settings
from stratoq.observability import metrics
from stratoq.observability.logging import stream_handler
from stratoq.services import dlq
from stratoq.services.enqueue import Enqueuer, services

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())

MAX_BODY_BYTES = 1024 * 1024  # a batch of 100 small tasks fits; API Gateway allows 10 MB
MAX_BATCH = 100

app = APIGatewayRestResolver(enable_validation=True)
app.configure_openapi(
    title="stratoq",
    version=__version__,
    summary="Serverless task queue: enqueue tasks, watch them run.",
    security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
    security=[{"apiKey": []}],
)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[TaskRequest] = Field(min_length=1, max_length=MAX_BATCH)


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_messages: int = Field(default=dlq.DEFAULT_MAX_MESSAGES, ge=1, le=dlq.MAX_MESSAGES)


class RetryFailedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=128)
    max_tasks: int = Field(default=100, ge=1, le=1000)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    scopes: list[str] = Field(min_length=1)
    name: str = Field(default="", max_length=128)


class HttpError(StratoqError):
    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class _Deps:
    core: Enqueuer | None = None
    keys: KeyStore | None = None
    schedules: ScheduleStore | None = None


def core() -> Enqueuer:
    if _Deps.core is None:
        _Deps.core = services()
    return _Deps.core


def keys() -> KeyStore:
    if _Deps.keys is None:
        _Deps.keys = key_store(Settings.from_env())
    return _Deps.keys


def schedules() -> ScheduleStore:
    if _Deps.schedules is None:
        settings = Settings.from_env()
        _Deps.schedules = ScheduleStore(
            aws.events(settings), settings.schedule_prefix, settings.scheduler_arn
        )
    return _Deps.schedules


def reset() -> None:
    """Forget cached clients (tests and the dev stack change settings)."""
    _Deps.core = None
    _Deps.keys = None
    _Deps.schedules = None


def _json(status: int, body: Any) -> Response[str]:
    return Response(
        status_code=status, content_type="application/json", body=json.dumps(body, default=str)
    )


def _task_json(task: Task) -> dict[str, Any]:
    return task.model_dump(mode="json")


def caller(scope: str) -> str:
    """The caller's tenant, after checking its key has `scope` (403 otherwise)."""
    authorizer = app.current_event.request_context.authorizer
    tenant = authorizer.get("tenant")
    if not tenant:
        raise HttpError(401, "Unauthorized")
    granted = str(authorizer.get("scopes") or "").split()
    if not (
        "admin" in granted
        or scope in granted
        or (scope == "tasks:read" and "tasks:write" in granted)
    ):
        raise HttpError(403, f"this API key lacks the {scope!r} scope")
    return str(tenant)


def _check_payload(request: TaskRequest, field: str = "payload") -> None:
    # Enqueuer.build refuses it too; checked here first to name the field in a batch.
    size = payload_size(request.payload)
    if size > MAX_PAYLOAD_BYTES:
        raise HttpError(
            413,
            f"{field} is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes",
            [{"field": field, "message": f"larger than {MAX_PAYLOAD_BYTES} bytes"}],
        )


# ------------------------------------------------------------------------- routes
@app.get("/health", security=[], responses=responses({200: ("up", Health)}, public=True))
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@app.get("/v1/openapi.json", responses=responses({200: ("this spec", OpenApiDocument)}))
def openapi() -> Response[str]:
    caller("tasks:read")
    return Response(200, "application/json", app.get_openapi_json_schema())


@app.post(
    "/v1/tasks",
    responses=responses(
        {202: ("enqueued", Task), 200: ("the idempotency key's existing task", Task)},
        400,
        413,
        503,
    ),
)
def enqueue(request: TaskRequest) -> Response[str]:
    """Enqueue a task. A repeated idempotency key answers 200 with the first task."""
    tenant = caller("tasks:write")
    _check_payload(request)
    result = core().enqueue(request, tenant)
    return _json(202 if result.created else 200, _task_json(result.task))


@app.post("/v1/tasks/batch", responses=responses({202: ("enqueued", TaskBatch)}, 400, 413, 503))
def enqueue_batch(batch: BatchRequest) -> Response[str]:
    """Enqueue up to 100 tasks at once."""
    tenant = caller("tasks:write")
    for i, request in enumerate(batch.tasks):
        _check_payload(request, f"tasks[{i}].payload")
    results = core().enqueue_many(batch.tasks, tenant)
    return _json(
        202,
        {"tasks": [_task_json(r.task) for r in results], "created": [r.created for r in results]},
    )


@app.post("/v1/tasks/retry", responses=responses({202: ("requeued", RetryResult)}, 400, 503))
def retry_failed(request: RetryFailedRequest | None = None) -> Response[str]:
    """Run the caller's failed tasks again (newest first, up to `max_tasks`; optional `name`)."""
    tenant = caller("tasks:write")
    req = request or RetryFailedRequest()
    report = dlq.retry_failed(core(), tenant, req.name, req.max_tasks)
    return _json(202, report.as_dict())


@app.get("/v1/tasks", responses=responses({200: ("a page", TaskPage)}, 400))
def list_tasks(
    status: Annotated[TaskStatus | None, Query()] = None,
    name: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[str]:
    """A page of the caller's tasks, newest first; `next_token` fetches the next page."""
    tenant = caller("tasks:read")
    try:
        tasks, token = core().store.list_tasks(tenant, status, name, limit, next_token)
    except ValueError as exc:
        raise HttpError(400, str(exc), [{"field": "next_token", "message": str(exc)}]) from None
    return _json(200, {"tasks": [_task_json(t) for t in tasks], "next_token": token})


@app.get("/v1/tasks/<task_id>", responses=responses({200: ("the task", Task)}, 404))
def get_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
    tenant = caller("tasks:read")
    task = core().store.get(task_id, tenant)
    if task is None:
        raise NotFoundError(f"no task {task_id}")
    return _json(200, _task_json(task))


@app.post("/v1/tasks/<task_id>/cancel", responses=responses({200: ("cancelled", Task)}, 404, 409))
def cancel_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
    """Cancel a task that has not started (409 if it is running or finished)."""
    tenant = caller("tasks:write")
    task = core().store.cancel(task_id, tenant, to_ms(utcnow()) or 0)
    metrics.task_cancelled(task)
    return _json(200, _task_json(task))


@app.post("/v1/tasks/<task_id>/retry", responses=responses({202: ("queued", Task)}, 404, 409, 503))
def retry_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
    """Run a failed or cancelled task again, its attempts reset (409 otherwise).

    A `queued` task that never started has its message sent again (for a task whose
    message was lost on the way to SQS; a duplicate message is harmless).
    """
    tenant = caller("tasks:write")
    c = core()
    task = c.store.requeue(task_id, tenant, to_ms(utcnow()) or 0)
    c.send_task(task)
    return _json(202, _task_json(task))


@app.get("/v1/queues", responses=responses({200: ("message counts", QueueList)}))
def queues() -> Response[str]:
    """Per queue and priority: visible, in flight, delayed and dead-letter message counts."""
    caller("tasks:read")
    return _json(200, {"queues": queue_stats(core().transport)})


@app.post(
    "/v1/queues/<queue>/redrive",
    responses=responses({200: ("what was moved", RedriveResult)}, 400, 404, 503),
)
def redrive_queue(
    queue: Annotated[str, Path(pattern=QUEUE_PATTERN)],
    request: RedriveRequest | None = None,
) -> Response[str]:
    """Move a queue's dead-letter messages back to work (operator tenant's admin keys only).

    A DLQ is shared by every tenant, so only the operator may drain it.
    """
    tenant = caller("admin")
    if not manages_every_tenant(tenant, Settings.from_env().operator_tenant):
        raise HttpError(403, "only the operator tenant's admin keys may redrive a queue")
    c = core()
    if queue not in c.transport.queue_names:  # a logical queue (its priorities follow it)
        raise NotFoundError(f"no queue {queue!r}")
    max_messages = (request or RedriveRequest()).max_messages
    return _json(200, dlq.redrive(c, queue, max_messages).as_dict())


@app.post("/v1/keys", responses=responses({201: ("the key, shown once", CreatedKey)}, 400, 413))
def create_key(request: KeyRequest) -> Response[str]:
    """Create an API key (admin). The key is in this answer only."""
    _key_admin(caller("admin"), request.tenant)
    key, record = keys().create(request.tenant, request.scopes, request.name)
    return _json(201, {"key": key, **record.public()})


@app.get("/v1/keys", responses=responses({200: ("keys, without secrets", KeyList)}))
def list_keys(tenant: Annotated[str | None, Query(max_length=64)] = None) -> Response[str]:
    mine = caller("admin")
    if not _key_admin(mine, tenant):
        tenant = mine
    return _json(200, {"keys": [k.public() for k in keys().list_keys(tenant)]})


@app.delete("/v1/keys/<key_id>", responses=responses({200: ("revoked", KeyRecord)}, 404))
def revoke_key(key_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
    mine = caller("admin")
    # Another tenant's key is reported missing, as another tenant's task is.
    scope = None if _key_admin(mine, None) else mine
    return _json(200, keys().revoke(key_id, scope).public())


def _key_admin(caller_tenant: str, tenant: str | None) -> bool:
    """True if the caller manages every tenant's keys; 403 if it asks for another tenant's."""
    if manages_every_tenant(caller_tenant, Settings.from_env().operator_tenant):
        return True
    if tenant is not None and tenant != caller_tenant:
        raise HttpError(403, f"this API key manages the keys of tenant {caller_tenant!r} only")
    return False


@app.get("/v1/schedules", responses=responses({200: ("the schedules", ScheduleList)}))
def list_schedules() -> Response[str]:
    """The caller's schedules (admin)."""
    tenant = caller("admin")
    found = schedules().list_schedules(tenant)
    return _json(200, {"schedules": [s.model_dump(mode="json") for s in found]})


@app.get("/v1/schedules/<name>", responses=responses({200: ("the schedule", Schedule)}, 404))
def get_schedule(name: Annotated[str, Path(pattern=SCHEDULE_NAME)]) -> Response[str]:
    """A schedule with `next_runs`, its next 5 fire times in UTC (admin)."""
    tenant = caller("admin")
    return _json(200, schedules().get(tenant, name).model_dump(mode="json"))


@app.put(
    "/v1/schedules/<name>",
    responses=responses({201: ("created", Schedule), 200: ("replaced", Schedule)}, 400, 413, 503),
)
def put_schedule(
    name: Annotated[str, Path(pattern=SCHEDULE_NAME)], spec: ScheduleSpec
) -> Response[str]:
    """Create (201) or replace (200) a schedule: an EventBridge rule and its target."""
    tenant = caller("admin")
    _check_payload(spec.task, "task.payload")
    if spec.task.queue not in core().transport.queue_names:
        raise UnknownQueueError(f"unknown queue {spec.task.queue!r}")
    schedule, created = schedules().put(tenant, name, spec)
    return _json(201 if created else 200, schedule.model_dump(mode="json"))


@app.delete("/v1/schedules/<name>", responses=responses({200: ("deleted", Deleted)}, 404))
def delete_schedule(name: Annotated[str, Path(pattern=SCHEDULE_NAME)]) -> Response[str]:
    tenant = caller("admin")
    schedules().delete(tenant, name)
    return _json(200, {"name": name, "deleted": True})


@app.post(
    "/v1/schedules/<name>/trigger",
    responses=responses({202: ("enqueued", Task)}, 404, 503),
)
def trigger_schedule(name: Annotated[str, Path(pattern=SCHEDULE_NAME)]) -> Response[str]:
    """Fire a schedule now, once, outside its expression (admin)."""
    tenant = caller("admin")
    schedule = schedules().get(tenant, name)
    fire = Fire(name, tenant, schedule.task, utcnow())
    result = core().enqueue(fire.request(), tenant)
    return _json(202, _task_json(result.task))


# ---------------------------------------------------------------------- errors
@app.exception_handler(ExpressionError)
def _bad_expression(exc: ExpressionError) -> Response[str]:
    message = f"expression: {exc}"
    return _json(
        422, {"message": message, "errors": [{"field": "expression", "message": str(exc)}]}
    )


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[str]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        if err.get("type") == "json_invalid":
            return _json(400, {"message": "request body is not valid JSON", "errors": []})
        field = ".".join(loc) or "body"
        errors.append({"field": field, "message": err.get("msg", "invalid")})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return _json(422, {"message": f"invalid request: {summary}", "errors": errors})


@app.exception_handler(HttpError)
def _http_error(exc: HttpError) -> Response[str]:
    return _json(exc.status, {"message": str(exc), "errors": exc.errors})


@app.exception_handler(NotFoundError)
def _not_found(exc: NotFoundError) -> Response[str]:
    return _json(404, {"message": str(exc), "errors": []})


@app.exception_handler(InvalidStateError)
def _conflict(exc: InvalidStateError) -> Response[str]:
    return _json(409, {"message": str(exc), "errors": []})


@app.exception_handler(UnknownQueueError)
def _unknown_queue(exc: UnknownQueueError) -> Response[str]:
    return _json(422, {"message": str(exc), "errors": [{"field": "queue", "message": str(exc)}]})


@app.exception_handler(PayloadTooLargeError)
def _too_large(exc: PayloadTooLargeError) -> Response[str]:
    return _json(413, {"message": str(exc), "errors": [{"field": "payload", "message": str(exc)}]})


@app.exception_handler(InvalidRequestError)
def _bad_request(exc: InvalidRequestError) -> Response[str]:
    return _json(400, {"message": str(exc), "errors": []})


@app.exception_handler(EnqueueError)
def _unavailable(exc: EnqueueError) -> Response[str]:
    return _json(503, {"message": f"{exc}; nothing was enqueued, try again", "errors": []})


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return _json(500, {"message": "internal error", "errors": []})


@app.not_found
def _no_route(exc: Exception) -> Response[str]:
    event = app.current_event
    return _json(404, {"message": f"no route {event.http_method} {event.path}", "errors": []})


@metrics.flush_after
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    body = event.get("body") or ""
    if len(body.encode() if isinstance(body, str) else body) > MAX_BODY_BYTES:
        return {
            "statusCode": 413,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(
                {"message": f"request body is over {MAX_BODY_BYTES} bytes", "errors": []}
            ),
        }
    if event.get("isBase64Encoded") and not _utf8(body):
        # API Gateway base64-encodes bodies that are not text; JSON is UTF-8 text.
        return {
            "statusCode": 400,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"message": "request body is not valid JSON", "errors": []}),
        }
    # The API speaks only JSON: parse every body as JSON whatever Content-Type says
    # (curl -d sends form encoding), so a bad body gets a JSON error naming the problem.
    for headers in (event.get("headers"), event.get("multiValueHeaders")):
        if headers:
            for name in [k for k in headers if k.lower() == "content-type"]:
                del headers[name]
    if event.get("headers") is not None:
        event["headers"]["content-type"] = "application/json"
    if event.get("multiValueHeaders") is not None:
        event["multiValueHeaders"]["content-type"] = ["application/json"]
    return app.resolve(event, context)


def _utf8(body: str | bytes) -> bool:
    """Whether a base64-encoded body decodes to UTF-8 text."""
    try:
        base64.b64decode(body, validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    return True
