"""Python SDK for the HTTP API.

from stratoq import Client
client = Client()    # STRATOQ_API_URL/_KEY, or .stratoq/dev.json here or in a parent
task = client.enqueue("echo", {"hi": 1}, delay_seconds=5)
done = client.wait(task.id, timeout=60)
for t in client.list(status="failed"):  # a Page of tasks; client.iter_tasks() walks all
    print(t.id, t.errors)
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import urllib3
from pydantic import BaseModel

from stratoq.api.contract import (
    MAX_WAIT_SECONDS,
    CancelResult,
    CreatedKey,
    Identity,
    KeyList,
    KeyRecord,
    PauseResult,
    QueueList,
    RedriveResult,
    RetryResult,
    Schedule,
    ScheduleList,
    Task,
    TaskBatch,
    TaskPage,
    TaskRequest,
)
from stratoq.api.errors import error_class
from stratoq.core.errors import (
    ApiError,
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    WaitTimeout,
)
from stratoq.core.models import TaskStatus
from stratoq.observability import tracing
from stratoq.sdk import dev_file
from stratoq.sdk.webhooks import WebhookMethods
from stratoq.sdk.workflows import WorkflowMethods

# The errors the client raises, importable from here as they always were; each is also
# the core's class of its status (NotFound is a NotFoundError, Conflict an
# InvalidStateError, AuthError an AccessDeniedError, InvalidRequest an InvalidRequestError,
# ServiceUnavailable a BackendUnavailableError).
__all__ = [
    "ApiError",
    "AuthError",
    "Client",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Page",
    "ServiceUnavailable",
    "Submitted",
    "WaitTimeout",
    "dev_config",
]


class Page:
    """One page of `Client.list`: iterate it for its tasks, newest first.

    `tasks` is the page's list, `next_token` the token of the next page (None on the
    last); `next_page()` fetches that page, `pages()` walks this page and every one after
    it. A page can hold fewer tasks than asked for (even none) while more follow: walk
    `pages()` (or `Client.iter_tasks`) rather than stopping at a short page.
    """

    __slots__ = ("_fetch", "next_token", "tasks")

    def __init__(
        self,
        tasks: builtins.list[Task],
        next_token: str | None,
        fetch: Callable[[str], Page] | None = None,
    ) -> None:
        self.tasks = tasks
        self.next_token = next_token
        self._fetch = fetch

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"Page({len(self.tasks)} tasks, next_token={self.next_token!r})"

    def next_page(self) -> Page | None:
        """The next page of the same query, or None after the last."""
        if not self.next_token or self._fetch is None:
            return None
        return self._fetch(self.next_token)

    def pages(self) -> Iterator[Page]:
        """This page, then every following page of the same query."""
        page: Page | None = self
        while page is not None:
            yield page
            page = page.next_page()


class Submitted(NamedTuple):
    """One entry of a batch: its task, and whether this request created it (False: an
    idempotency key, explicit or `unique`, named an existing task)."""

    task: Task
    created: bool


def dev_config(path: Path | None = None) -> dict[str, str]:
    """The URLs and key `stratoq dev` wrote: `path`, else STRATOQ_DEV_FILE, else the
    `.stratoq/dev.json` of this directory or its nearest parent that has one; {} if none."""
    return dev_file.load(path).facts


class Client(WorkflowMethods, WebhookMethods):
    """A thread-safe client with pooled keep-alive connections (workflow methods:
    `stratoq.sdk.workflows`)."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        ca_bundle: str | None = None,
        retries: int = 3,
    ) -> None:
        found = dev_file.DevFile()
        if api_url is None or api_key is None or ca_bundle is None:
            found = dev_file.load()
        dev = found.facts
        url = api_url or os.environ.get("STRATOQ_API_URL") or dev.get("api_url")
        key = api_key or os.environ.get("STRATOQ_API_KEY") or dev.get("api_key")
        if not url or not key:
            raise found.no_api()
        self.api_url = url.rstrip("/")
        self.timeout = timeout
        if ca_bundle is None:
            # The dev stack's own CA (`stratoq dev --tls`) is trusted for its URL only.
            dev_ca = dev.get("ca_bundle") if dev.get("api_url") == url else None
            ca_bundle = os.environ.get("STRATOQ_CA_BUNDLE") or dev_ca or None
        self._headers = {"x-api-key": key, "content-type": "application/json"}
        # Retries cover connection errors and 429/503 only; POSTs are retried too,
        # which is safe for enqueue only with an idempotency key (documented).
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout),
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=(429, 503),
                allowed_methods=None,
                raise_on_status=False,
            ),
            ca_certs=ca_bundle,
        )

    def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        fields = {k: str(v) for k, v in (query or {}).items() if v is not None}
        url = self.api_url + path
        if fields:
            from urllib.parse import urlencode

            url += "?" + urlencode(fields)
        data = None if body is None else json.dumps(body, default=str).encode()
        # The caller's current span (OpenTelemetry's `traceparent`) goes on in the API,
        # the enqueue and the task: a handler's own enqueues join its task's trace.
        headers = {**self._headers, **tracing.headers()}
        resp = self._http.request(method, url, body=data, headers=headers)
        try:
            payload = json.loads(resp.data) if resp.data else {}
        except ValueError:
            payload = {"message": resp.data.decode(errors="replace")[:200]}
        if resp.status >= 400:
            # API Gateway's own answers spell it "Message" at times.
            message = payload.get("message") or payload.get("Message") or "error"
            raise error_class(resp.status)(resp.status, str(message), payload.get("errors"))
        return payload

    # ------------------------------------------------------------------- tasks
    def enqueue(self, name: str, payload: Any = None, **options: Any) -> Task:
        """Enqueue one task. Options: queue, priority, delay_seconds, run_at,
        timeout_seconds, max_attempts, backoff, idempotency_key, lock_key, and
        `unique=True` (the key is derived from name + payload; not with idempotency_key)
        and idempotency_window_seconds (1 s to 7 days; default the deployment's 24 h);
        `allow_unknown_name=True` where the API checks task names and this one's workers
        are not deployed yet.

        Repeating a key within its window returns the first task, even a finished one.
        Options left out take the task's own (`@task(queue=...)`) where the API knows it,
        then the deployment's defaults."""
        return self.enqueue_request(TaskRequest(name=name, payload=payload, **options))

    def enqueue_request(self, request: TaskRequest) -> Task:
        """Enqueue the task `request` describes (what `TaskFunction.enqueue` calls). Only
        the fields set on it are sent: the API fills the others from the task's options."""
        return Task.model_validate(self._call("POST", "/v1/tasks", _body(request)))

    def enqueue_many(self, requests: Iterable[TaskRequest | dict[str, Any]]) -> builtins.list[Task]:
        """Enqueue many tasks, 100 per request; the tasks in request order."""
        return [s.task for s in self.enqueue_batch(requests)]

    def enqueue_batch(
        self, requests: Iterable[TaskRequest | dict[str, Any]]
    ) -> builtins.list[Submitted]:
        """Like `enqueue_many`, with each entry's `created` flag: entries sharing an
        idempotency key (or `unique` name + payload) answer one task, the later ones
        with created=False. Deduplication spans the 100-task requests too."""
        out: list[Submitted] = []
        batch: list[dict[str, Any]] = []
        for r in requests:
            req = r if isinstance(r, TaskRequest) else TaskRequest.model_validate(r)
            batch.append(_body(req))
            if len(batch) == 100:
                out.extend(self._batch(batch))
                batch = []
        if batch:
            out.extend(self._batch(batch))
        return out

    def _batch(self, batch: builtins.list[dict[str, Any]]) -> builtins.list[Submitted]:
        answer = self._call("POST", "/v1/tasks/batch", {"tasks": batch})
        if not answer.get("created"):  # APIs before `created` made every task
            answer["created"] = [True] * len(answer["tasks"])
        done = TaskBatch.model_validate(answer)
        return [Submitted(t, c) for t, c in zip(done.tasks, done.created, strict=True)]

    def get(self, task_id: str, wait: float | None = None) -> Task:
        """A task. With `wait`, the API answers as soon as the task is final or after
        `wait` seconds with the task as it is then (its `status` tells which); a wait is
        capped at 20 s (the API's limit) and at this client's `timeout` less 5 s."""
        query = None
        if wait is not None:
            query = {"wait": f"{self._wait_slice(wait):g}"}
        return Task.model_validate(self._call("GET", f"/v1/tasks/{task_id}", query=query))

    def _wait_slice(self, seconds: float) -> float:
        # Room for the request around the wait, so the answer beats the HTTP timeout.
        return round(max(0.0, min(seconds, MAX_WAIT_SECONDS, self.timeout - 5)), 3)

    def cancel(self, task_id: str) -> Task:
        """Cancel a task: `cancelled` if it had not started; a running one comes back
        `running` with `cancel_requested_at` and ends `cancelled` within seconds."""
        return Task.model_validate(self._call("POST", f"/v1/tasks/{task_id}/cancel"))

    def cancel_many(
        self,
        *,
        queue: str | None = None,
        name: str | None = None,
        status: TaskStatus | str | None = None,
        created_before: datetime | str | None = None,
        max_tasks: int = 1000,
    ) -> dict[str, Any]:
        """Cancel the tasks matching every filter given (at least one): `{"cancelled",
        "requested", "more"}` (running ones are `requested`); call again while `more`."""
        if isinstance(created_before, datetime):
            created_before = created_before.isoformat()
        given = {"queue": queue, "name": name, "status": status, "created_before": created_before}
        body = {k: str(v) for k, v in given.items() if v is not None}
        answer = self._call("POST", "/v1/tasks/cancel", {**body, "max_tasks": max_tasks})
        return _dump(CancelResult.model_validate(answer))

    def retry(self, task_id: str) -> Task:
        return Task.model_validate(self._call("POST", f"/v1/tasks/{task_id}/retry"))

    def retry_failed(
        self,
        name: str | None = None,
        max_tasks: int = 100,
        *,
        queue: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Run up to `max_tasks` failed tasks again (newest first), those matching every
        filter given: `{"retried", "task_ids", "more"}`; call again while `more`."""
        given = {
            "name": name,
            "queue": queue,
            "created_after": _time(created_after),
            "created_before": _time(created_before),
        }
        body: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        body["max_tasks"] = max_tasks
        return _dump(RetryResult.model_validate(self._call("POST", "/v1/tasks/retry", body)))

    def redrive(self, queue: str = "default", max_messages: int | None = None) -> dict[str, Any]:
        """Move a queue's dead-letter messages back to work (operator's admin key only):
        `{"queue", "received", "redriven", "resent", "dropped", "left", "more"}`."""
        body = {} if max_messages is None else {"max_messages": max_messages}
        answer = self._call("POST", f"/v1/queues/{queue}/redrive", body)
        return _dump(RedriveResult.model_validate(answer))

    def list(
        self,
        status: TaskStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
        *,
        queue: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Page:
        """One page of the tasks matching every filter given, newest first: a `Page`,
        which iterates over its tasks and has `tasks`, `next_token`, `next_page()` and
        `pages()`. A page may hold fewer than `limit` tasks (even none) while there are
        more: `pages()` goes on until `next_token` is None. Times are RFC 3339 text or
        aware datetimes; both ends are exclusive."""
        after, before = _time(created_after), _time(created_before)
        query = {"status": status, "name": name, "queue": queue, "limit": limit}
        query.update(created_after=after, created_before=before, next_token=next_token)
        page = TaskPage.model_validate(self._call("GET", "/v1/tasks", query=query))
        rest = partial(self.list, queue=queue, created_after=after, created_before=before)
        return Page(page.tasks, page.next_token, lambda token: rest(status, name, limit, token))

    def iter_tasks(
        self,
        status: TaskStatus | str | None = None,
        name: str | None = None,
        page_size: int = 100,
        *,
        queue: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Iterator[Task]:
        """Every matching task, newest first, fetched `page_size` at a time."""
        first = self.list(
            status,
            name,
            page_size,
            queue=queue,
            created_after=created_after,
            created_before=created_before,
        )
        for page in first.pages():
            yield from page

    def wait(self, task_id: str, timeout: float = 60.0, poll: float = 0.2) -> Task:
        """Wait until the task is final; raises WaitTimeout after `timeout` seconds.

        One request per slice of up to 20 s (`get(task_id, wait=...)`): the API answers
        as soon as the task ends. `poll` paces the requests only when the API answers
        at once without waiting (an API older than `?wait=`, or a client `timeout` of
        5 s or less)."""
        deadline = time.monotonic() + timeout
        while True:
            sent = time.monotonic()
            task = self.get(task_id, wait=max(0.0, deadline - sent))
            if task.status.final:
                return task
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(f"task {task_id} is still {task.status} after {timeout} s")
            if now - sent < poll:
                time.sleep(min(poll, deadline - now))

    def queues(self) -> builtins.list[dict[str, Any]]:
        """Message counts per queue and priority, and whether the queue is paused
        (`QueueCounts` as dicts)."""
        return [_dump(q) for q in QueueList.model_validate(self._call("GET", "/v1/queues")).queues]

    # ------------------------------------------------------------------ pauses
    def pause_queue(self, queue: str) -> dict[str, Any]:
        """Pause a queue (operator's admin key only): workers hand its tasks back unrun,
        no attempt spent, until `resume_queue`. `{"kind", "name", "paused", "changed"}`;
        `changed` is False if it already was paused."""
        return self._pause(f"/v1/queues/{queue}/pause")

    def resume_queue(self, queue: str) -> dict[str, Any]:
        """Resume a paused queue (operator's admin key only); as `pause_queue`."""
        return self._pause(f"/v1/queues/{queue}/resume")

    def pause_task_name(self, name: str) -> dict[str, Any]:
        """Pause a task name on every queue (operator's admin key only); as `pause_queue`."""
        return self._pause(f"/v1/tasks/names/{name}/pause")

    def resume_task_name(self, name: str) -> dict[str, Any]:
        """Resume a paused task name (operator's admin key only); as `pause_queue`."""
        return self._pause(f"/v1/tasks/names/{name}/resume")

    def paused(self) -> dict[str, builtins.list[str]]:
        """What is paused: `{"queues": [...], "task_names": [...]}`, each sorted."""
        listed = QueueList.model_validate(self._call("GET", "/v1/queues"))
        queues = sorted({q.queue for q in listed.queues if q.paused})
        return {"queues": queues, "task_names": listed.paused_task_names}

    def _pause(self, path: str) -> dict[str, Any]:
        return _dump(PauseResult.model_validate(self._call("POST", path)))

    # --------------------------------------------------------------- schedules
    def put_schedule(
        self,
        name: str,
        expression: str,
        task: TaskRequest | dict[str, Any],
        enabled: bool = True,
        *,
        timezone: str = "UTC",
        jitter_seconds: int = 0,
        missed: str = "skip",
    ) -> dict[str, Any]:
        """Create or replace a recurring task (needs admin).

        `timezone` (IANA) is the zone the cron expression is read in; each fire is
        delayed by a random 0..`jitter_seconds`; `missed` ("skip" or "run_once") says
        whether enabling it again runs one task for fire times missed while disabled
        (the answer's `caught_up_task_id`).
        """
        req = task if isinstance(task, TaskRequest) else TaskRequest.model_validate(task)
        body = {
            "expression": expression,
            "task": _body(req),
            "enabled": enabled,
            "timezone": timezone,
            "jitter_seconds": jitter_seconds,
            "missed": missed,
        }
        return _dump(Schedule.model_validate(self._call("PUT", f"/v1/schedules/{name}", body)))

    def get_schedule(self, name: str) -> dict[str, Any]:
        """A schedule (a `Schedule` as a dict), `next_runs` included."""
        return _dump(Schedule.model_validate(self._call("GET", f"/v1/schedules/{name}")))

    def list_schedules(self) -> builtins.list[dict[str, Any]]:
        answer = ScheduleList.model_validate(self._call("GET", "/v1/schedules"))
        return [_dump(s) for s in answer.schedules]

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/v1/schedules/{name}")

    def trigger_schedule(self, name: str) -> Task:
        return Task.model_validate(self._call("POST", f"/v1/schedules/{name}/trigger"))

    # -------------------------------------------------------------------- keys
    def create_key(self, tenant: str, scopes: Sequence[str], name: str = "") -> dict[str, Any]:
        """Create an API key (needs admin); the answer's `key` is shown only here."""
        body = {"tenant": tenant, "scopes": list(scopes), "name": name}
        return _dump(CreatedKey.model_validate(self._call("POST", "/v1/keys", body)))

    def list_keys(self, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        answer = KeyList.model_validate(self._call("GET", "/v1/keys", query={"tenant": tenant}))
        return [_dump(k) for k in answer.keys]

    def whoami(self) -> dict[str, Any]:
        """The key's `{"tenant", "scopes", "operator"}` (`GET /v1/whoami`)."""
        return _dump(Identity.model_validate(self._call("GET", "/v1/whoami")))

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return _dump(KeyRecord.model_validate(self._call("DELETE", f"/v1/keys/{key_id}")))


def _time(value: datetime | str | None) -> str | None:
    """A time filter as the API takes it (RFC 3339 text)."""
    return value.isoformat() if isinstance(value, datetime) else value


def _dump(answer: BaseModel) -> dict[str, Any]:
    """A parsed answer as the JSON dict the methods that predate the models return."""
    return answer.model_dump(mode="json")


def _body(request: TaskRequest) -> dict[str, Any]:
    # Fields the caller left unset stay out, so the API can tell them from explicit ones.
    body = request.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    if not body.get("unique"):
        body.pop("unique", None)  # only when asked for: older APIs do not know the field
    return body
