"""Patches to moto server: two races fixed, and cheaper requests with the same answers.

Races:
- moto's SQS DeleteMessage rebuilds the queue's message list without the lock that
  SendMessage appends under, so a message sent while another is being deleted can
  vanish. Under concurrent load (workers deleting while producers send) tasks were lost:
  8 of 20,000 in one benchmark run. DeleteMessage now holds the queue's lock.
- moto's DynamoDB has no locking at all: two concurrent conditional writes to one item
  can both read the old item, both pass their condition and both apply, which DynamoDB
  never allows (8 threads racing for one free lock item: several winners in 20 of 30
  rounds). Every DynamoDB request is now handled under one lock, as if atomic per item;
  moto's DynamoDB is bound by the GIL anyway, so this costs next to no throughput.

Speed:
moto recomputes queue attributes (three O(depth) scans) for every message it hands out,
only to read the retention period, and for every message it is sent, only to read a flag
that standard queues do not have; it converts every clock reading through naive
datetimes: all of this makes sends and receives cost more the deeper the queue (a send
at a depth of 1,000 cost about 1.4 ms). Its dispatcher also matches every request's host
against every service's URL patterns while holding a global lock; the answer depends only
on the host, so it is remembered. DynamoDB parses an UpdateExpression twice per request
(about a fifth of a conditional UpdateItem's time); the parse depends only on the text
and every user of it copies it before changing anything, so parses are remembered. The
embedded emulator and the benchmark emulator (both peers alike) install these
replacements; `--stock` in loadtests/bench.py measures without them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

_installed = False


def install() -> None:
    """Patch moto's SQS backend and dispatcher in this process (idempotent)."""
    global _installed
    if _installed:
        return
    from moto.sqs import models

    original_delete = models.Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            original_delete(self, receipt_handle)

    models.Queue.delete_message = delete_message  # type: ignore[method-assign]

    from moto.dynamodb.responses import DynamoHandler

    original_call_action = DynamoHandler.call_action
    dynamodb_lock = threading.RLock()

    def call_action(self: Any) -> Any:
        with dynamodb_lock:
            return original_call_action(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]

    def unix_time(dt: Any = None) -> float:
        if dt is not None:
            return _original_unix_time(dt)
        return time.time()

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        queue = self.get_queue(queue_name)
        retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
        return bool(retain_until > time.time())

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original_backend_for_host = DomainDispatcherApplication.get_backend_for_host

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host is None:
            return None
        cache: dict[str, Any] = self.__dict__.setdefault("_stratoq_backends", {})
        if host not in cache:
            cache[host] = original_backend_for_host(self, host)
        return cache[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    _patch_standard_queue_sends(models)
    _remember_update_expressions()
    _serialize_plain_attribute_values()
    _original_unix_time = models.unix_time  # type: ignore[attr-defined]
    models.unix_time = unix_time  # type: ignore[attr-defined]
    models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]
    models.SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    _installed = True


def _patch_standard_queue_sends(models: Any) -> None:
    """SendMessage on a standard queue without the attribute scan (same answers).

    moto's send reads `queue.attributes["ContentBasedDeduplication"]`, which a standard
    queue never has, by building every attribute (depth counts included). While a
    thread sends to a standard queue, that queue's attributes read as empty to that
    thread only; every other reader (GetQueueAttributes) still gets them all.
    """
    sending = threading.local()
    original_attributes = models.Queue.attributes

    def attributes(self: Any) -> Any:
        if getattr(sending, "queue", None) is self:
            return {}
        return original_attributes.fget(self)

    original_send = models.SQSBackend.send_message

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            return original_send(self, queue_name, *args, **kwargs)
        sending.queue = queue
        try:
            return original_send(self, queue_name, *args, **kwargs)
        finally:
            sending.queue = None

    models.Queue.attributes = property(attributes)
    models.SQSBackend.send_message = send_message


def _remember_update_expressions() -> None:
    """Parse each UpdateExpression text once; a bad one still raises every time."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    original_make = UpdateExpressionParser.make.__func__
    parsed: dict[str, Any] = {}

    def make(cls: Any, expression: str) -> Any:
        ast = parsed.get(expression)
        if ast is None:
            ast = original_make(cls, expression)
            if len(parsed) < 4096:  # expressions are code, not data: few distinct ones
                parsed[expression] = ast
        return ast

    UpdateExpressionParser.make = classmethod(make)


# AttributeValue members whose JSON form is the value itself (no base64, no nesting).
_PLAIN_MEMBERS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


def _serialize_plain_attribute_values() -> None:
    """Write a DynamoDB string, number, bool or null AttributeValue as it is (same JSON).

    moto's serializer looks each of AttributeValue's ten members up through its alias
    providers for every attribute it returns: a quarter of a claim's UpdateItem (ALL_OLD).
    For a one-member value of those kinds the walk can only produce the value itself,
    unless a response transformer could match the member's key path; then, and for
    binary, set and nested values, moto's own walk runs.
    """
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(
        self: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if key and shape.name == "AttributeValue" and type(value) is dict and len(value) == 1:
            ((kind, member),) = value.items()
            if _PLAIN_MEMBERS.get(kind) is type(member) and not _may_transform(self):
                serialized[key] = {kind: member}
                return
        original(self, serialized, value, shape, key)

    _serialize_type_structure.__wrapped__ = original  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]


def _may_transform(serializer: Any) -> bool:
    # A transformer applies where the key path ends with its path; a member's key path
    # ends with ".S", ".N", ".BOOL" or ".NULL".
    paths = getattr(serializer._value_picker, "response_transformers", None) or {}
    return any(path.endswith(("S", "N", "L")) for path in paths)
