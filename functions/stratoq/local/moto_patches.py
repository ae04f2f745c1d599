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

Latency: a long poll also wakes when a delayed or in-flight message comes due (moto
woke it only for a send), so such a message is handed out on time, not up to 1 s late.

Speed:
moto recomputes queue attributes (three O(depth) scans) for every message it hands out,
only to read the retention period, and for every message it is sent, only to read a flag
that standard queues do not have; it converts every clock reading through naive
datetimes; a receive lists every visible message before taking the first ten, and a
delete scans the whole queue twice for the message's handle: all of this makes sends,
receives and deletes cost more the deeper the queue (a send at a depth of 1,000 cost
about 1.4 ms, a batch of ten deletes at 3,000 about 4.6 ms; now 1.0). Its dispatcher
also matches every request's host against every service's URL patterns while holding a
global lock; the answer depends only on the host, so it is remembered; so is the list of
a response class's methods, which it rebuilt with `inspect` for every request. DynamoDB
parses an UpdateExpression twice per request (about a fifth of a conditional
UpdateItem's time); the parse depends only on the text and every user of it copies it
before changing anything, so parses are remembered, copied from a pickle, and the checks
that depend only on the text, the names and the table's keys run once per combination. A
ConditionExpression's tokens are remembered by text. Returned items skip the
serializer's per-member alias lookups for values whose JSON is the value itself.
Together a conditional UpdateItem returning the old item went from 3.3 to 2.2 ms of
emulator CPU. The embedded emulator and the benchmark emulator (both peers alike)
install these replacements; `--stock` in loadtests/bench.py measures without them.

Fairness: receives on a standard queue whose messages carry a MessageGroupId (stratoq's
carry the tenant) go fewest-in-flight group first, as SQS fair queues do
(stratoq.local.moto_fair); `install(fair=False)` leaves moto's oldest-first order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_installed = False


def install(fair: bool = True) -> None:
    """Patch moto's SQS backend and dispatcher in this process (idempotent). `fair`:
    fair receives on queues with message groups (only benchmarks turn it off)."""
    global _installed
    if _installed:
        return
    from moto.sqs import models
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    from stratoq.local import moto_fair

    def delete_message(self: Any, receipt_handle: str) -> None:
        # moto scans the whole queue twice per delete, building every message's list of
        # handles each time; one pass that stops at the message (handles are random, so
        # no two messages share one) gives the same answer at any depth.
        with self._messages_lock:
            if receipt_handle in self.deleted_messages:
                return  # deleting again is fine, as in SQS
            messages = self._messages
            index = next(
                (i for i, m in enumerate(messages) if holds_receipt(m, receipt_handle)), None
            )
            if index is None:
                raise ReceiptHandleIsInvalid()
            message = messages[index]
            # A new list, as moto makes: a receive iterating the old one is undisturbed.
            self._messages = messages[:index] + messages[index + 1 :]
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)

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
    _patch_receives(models)
    if fair:
        moto_fair.install(models)
    _remember_update_expressions()
    _serialize_plain_attribute_values()
    _remember_condition_tokens()
    _remember_action_names()
    _original_unix_time = models.unix_time  # type: ignore[attr-defined]
    models.unix_time = unix_time  # type: ignore[attr-defined]
    models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]
    models.SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    _installed = True


class _Busy(threading.local):
    """The queue this thread is sending to or receiving from, while it does so."""

    queue: Any = None

    def holds(self, queue: Any) -> bool:
        return self.queue is queue

    @contextmanager
    def on(self, queue: Any) -> Iterator[None]:
        outer = self.queue  # a receive within a receive (a dead-letter move): rare
        self.queue = queue
        try:
            yield
        finally:
            self.queue = outer


def _patch_standard_queue_sends(models: Any) -> None:
    """SendMessage on a standard queue without the attribute scan (same answers).

    moto's send reads `queue.attributes["ContentBasedDeduplication"]`, which a standard
    queue never has, by building every attribute (depth counts included). While a
    thread sends to a standard queue, that queue's attributes read as empty to that
    thread only; every other reader (GetQueueAttributes) still gets them all.
    """
    sending = _Busy()
    original_attributes = models.Queue.attributes

    def attributes(self: Any) -> Any:
        return {} if sending.holds(self) else original_attributes.fget(self)

    original_send = models.SQSBackend.send_message

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            return original_send(self, queue_name, *args, **kwargs)
        with sending.on(queue):
            return original_send(self, queue_name, *args, **kwargs)

    models.Queue.attributes = property(attributes)
    models.SQSBackend.send_message = send_message


def holds_receipt(message: Any, receipt_handle: str) -> bool:
    """moto's `had_receipt_handle` without building the list of handles."""
    return bool(
        receipt_handle == message.receipt_handle or receipt_handle in message._old_receipt_handles
    )


class _Visible:
    """A queue's visible messages, found as they are asked for.

    ReceiveMessage only iterates them until it has its count and waits until there are
    some; moto lists them all first, asking each message for its visibility and delay,
    which grows with the queue's depth. The list is copied when read, as moto's is: a
    dead-letter move by another receive removes from it in place.
    """

    def __init__(self, messages: list[Any]) -> None:
        self._messages = list(messages)

    def __iter__(self) -> Any:
        return (m for m in self._messages if m.visible and not m.delayed)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _patch_receives(models: Any) -> None:
    """ReceiveMessage stops looking at a queue's messages once it has enough (same answers),
    and on a queue with message groups takes them in a fair order (stratoq.local.moto_fair).

    While a thread receives from a queue, that queue's `messages` reads lazily for that
    thread only; every other reader (the depth counts) still gets the full list.
    """
    from stratoq.local.moto_fair import FairVisible, is_grouped

    receiving = _Busy()
    original_messages = models.Queue.messages

    def messages(self: Any) -> Any:
        if receiving.holds(self):
            if is_grouped(self):
                return FairVisible(vars(self)["_messages"])
            return _Visible(vars(self)["_messages"])
        return original_messages.fget(self)

    original_receive = models.SQSBackend.receive_message

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with receiving.on(self.get_queue(queue_name)):
            return original_receive(self, queue_name, *args, **kwargs)

    models.Queue.messages = property(messages)
    models.SQSBackend.receive_message = receive_message

    def wait_for_messages(self: Any, timeout: float) -> None:
        # moto's long poll looks again only after a send or a 1 s wait, so a message
        # whose delay (or visibility timeout) ended meanwhile was handed out up to a
        # second late; SQS hands it out when it comes due. Rate-limited tasks, delayed
        # to less than a second before their tokens, started in bunches a second late.
        with self._messages_lock:
            now = time.time() * 1000
            dues = (max(m.visible_at, m.delayed_until) for m in vars(self)["_messages"])
            first = min((due for due in dues if due > now), default=None)
            if first is not None:
                timeout = min(timeout, (first - now + 1) / 1000)  # "visible": after it
            self._messages_lock.wait_for(lambda: self.messages, timeout=timeout)

    models.Queue.wait_for_messages = wait_for_messages


def _remember_update_expressions() -> None:
    """Parse each UpdateExpression text once; a bad one still raises every time.

    Every UpdateItem's validator works on a copy of the parse: the copy is made from a
    pickle of it (a fifth of deepcopy's time). Its first three passes only check the
    expression against the attribute names and the table's keys, never the values or the
    item; once they passed for a text, names and keys, they are not run again for them.
    """
    import copy
    import pickle  # nosec B403 - only this process's own parse trees are pickled

    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    original_make = UpdateExpressionParser.make.__func__
    parsed: dict[str, Any] = {}
    # id(parse) -> (parse, its pickle, its text); the parse is kept so the id stays its.
    templates: dict[int, tuple[Any, bytes, str]] = {}
    clones = threading.local()

    def make(cls: Any, expression: str) -> Any:
        ast = parsed.get(expression)
        if ast is None:
            ast = original_make(cls, expression)
            if len(parsed) < 4096:  # expressions are code, not data: few distinct ones
                parsed[expression] = ast
                try:
                    blob = pickle.dumps(ast, protocol=pickle.HIGHEST_PROTOCOL)
                except (pickle.PicklingError, TypeError, AttributeError):
                    pass  # deepcopy it is
                else:
                    templates[id(ast)] = (ast, blob, expression)
        return ast

    def clone(obj: Any, memo: Any = None) -> Any:
        entry = templates.get(id(obj))
        if entry is None or entry[0] is not obj:
            return copy.deepcopy(obj, memo)
        fresh = pickle.loads(entry[1])  # noqa: S301  # nosec B301 - pickled above
        clones.last = (fresh, entry[2])
        return fresh

    pure_checks = (
        validators.ActionCountValidator,
        validators.OverlappingPathsValidator,
        validators.UpdateHashRangeKeyValidator,
    )
    passed: set[tuple[Any, ...]] = set()
    original_validate = validators.UpdateExpressionValidator.validate

    def validate(self: Any) -> Any:
        fresh, text = getattr(clones, "last", (None, None))
        if fresh is not self.node_to_validate:
            return original_validate(self)
        names = tuple(sorted((self.expression_attribute_names or {}).items()))
        key = (text, names, tuple(self.table.table_key_attrs))
        if key in passed:
            self.processors = [p for p in self.processors if not isinstance(p, pure_checks)]
            return original_validate(self)
        node = original_validate(self)
        if len(passed) < 4096:
            passed.add(key)
        return node

    UpdateExpressionParser.make = classmethod(make)
    validators.deepcopy = clone  # type: ignore[attr-defined,assignment]
    validators.UpdateExpressionValidator.validate = validate  # type: ignore[method-assign]


# AttributeValue members whose JSON form is the value itself (no base64, no nesting), in
# the services whose AttributeValue this is (gamelift's, for one, has a numeric N).
_DYNAMODB = ("dynamodb", "dynamodbstreams")
_PLAIN_MEMBERS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


def _serialize_plain_attribute_values() -> None:
    """Write a DynamoDB string, number, bool or null AttributeValue as it is (same JSON).

    moto's serializer looks each of AttributeValue's ten members up through its alias
    providers for every attribute it returns: a quarter of a claim's UpdateItem (ALL_OLD).
    For a one-member value of those kinds the walk can only produce the value itself,
    unless a response transformer could match one of the members' key paths; then, and
    for binary, set and nested values, moto's own walk runs.
    """
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(
        self: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and type(value) is dict
            and len(value) == 1
            and self.service_model.service_name in _DYNAMODB
        ):
            ((kind, member),) = value.items()
            if _PLAIN_MEMBERS.get(kind) is type(member) and not _may_transform(self):
                serialized[key] = {kind: member}
                return
        original(self, serialized, value, shape, key)

    _serialize_type_structure.__wrapped__ = original  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]


def _may_transform(serializer: Any) -> bool:
    # moto applies a transformer to every member (absent ones too) whose key path ends
    # with the transformer's path, and every AttributeValue member's name ends in one of
    # these letters. The transformers are shared by all services (IAM and SNS add some).
    paths = getattr(serializer._value_picker, "response_transformers", None) or {}
    return any(not path or path[-1] in "SNBML" for path in paths)


def _remember_condition_tokens() -> None:
    """Split each ConditionExpression text into tokens once (moto does it twice a request).

    The tokens depend only on the text and are immutable tuples; each parse gets its own
    deque of them. Names and values are still looked up on every parse.
    """
    from collections import deque

    from moto.dynamodb.comparisons import ConditionExpressionParser

    original_lex = ConditionExpressionParser._lex_condition_expression
    lexed: dict[str, tuple[Any, ...]] = {}

    def _lex_condition_expression(self: Any) -> Any:
        text = self.condition_expression
        tokens = lexed.get(text)
        if tokens is None:
            tokens = tuple(original_lex(self))
            if len(lexed) < 4096:
                lexed[text] = tokens
        return deque(tokens)

    ConditionExpressionParser._lex_condition_expression = _lex_condition_expression  # type: ignore[method-assign]


def _remember_action_names() -> None:
    """List a response class's methods once, not with inspect on every request."""
    from functools import cache

    from moto.core import responses

    responses.method_names_from_class = cache(responses.method_names_from_class)  # type: ignore[attr-defined]
