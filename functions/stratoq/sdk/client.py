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
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import urllib3

from stratoq.api.contract import (
    MAX_WAIT_SECONDS,
    CancelResult,
    RedriveResult,
    RetryResult,
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
from stratoq.sdk.admin import AdminMethods
from stratoq.sdk.limits import LimitMethods
from stratoq.sdk.shapes import body_of, dump, time_text
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


class Client(AdminMethods, LimitMethods, WorkflowMethods, WebhookMethods):
    """A thread-safe client with pooled keep-alive connections (queue, schedule and key
    methods: `stratoq.sdk.admin`; limits: `stratoq.sdk.limits`; webhooks:
    `stratoq.sdk.webhooks`; workflows:
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
        timeout_seconds, max_attempts, backoff, idempotency_key, lock_key, the limits
        concurrency_key, max_concurrency, rate_limit, rate_limit_key, debounce
        (debounce_key with debounce_seconds: only the last of a key's burst runs), and
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
        return Task.model_validate(self._call("POST", "/v1/tasks", body_of(request)))

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
            batch.append(body_of(req))
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
        return dump(CancelResult.model_validate(answer))

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
            "created_after": time_text(created_after),
            "created_before": time_text(created_before),
        }
        body: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        body["max_tasks"] = max_tasks
        return dump(RetryResult.model_validate(self._call("POST", "/v1/tasks/retry", body)))

    def redrive(self, queue: str = "default", max_messages: int | None = None) -> dict[str, Any]:
        """Move a queue's dead-letter messages back to work (operator's admin key only):
        `{"queue", "received", "redriven", "resent", "dropped", "left", "more"}`."""
        body = {} if max_messages is None else {"max_messages": max_messages}
        answer = self._call("POST", f"/v1/queues/{queue}/redrive", body)
        return dump(RedriveResult.model_validate(answer))

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
        after, before = time_text(created_after), time_text(created_before)
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
