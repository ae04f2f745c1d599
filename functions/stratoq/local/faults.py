"""A fault injector in front of the embedded emulator: AWS failing the ways it really fails.

A WSGI layer around moto's app answers chosen requests, at a chosen rate, per service
and action, with what AWS answers under stress: throttling errors, 500 and 503, a reset
connection, a slow answer, or the worst case, a "lost response" (the request is applied,
then the connection is reset before the answer, so the client retries a write that
already happened). docs/reliability.md describes the spec and the control endpoint.

Spec: comma-separated rules `SERVICE:ACTION=KIND:RATE[:OPTION=VALUE...]`, e.g.
`dynamodb:UpdateItem=lost:0.05,sqs:*=throttle:0.02:times=10`. SERVICE is the request's
signing name (dynamodb, sqs, events, ...) or `*`; ACTION the operation (X-Amz-Target or
the Action form field) or `*`. KIND is one of KINDS; RATE a probability in [0, 1].
Options: `times=N` (inject at most N times), `seconds=S` (a delay's length, default 1),
`match=TEXT` (only requests whose body contains TEXT, e.g. an expression or a table).

Decisions come from one seeded random generator, so a single-threaded run with a given
seed faults the same requests every time.
"""

from __future__ import annotations

import io
import json
import random
import re
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

CONTROL_PATH = "/stratoq-faults"
KINDS = ("throttle", "capacity", "500", "503", "reset", "delay", "lost")
_RESET = "stratoq.faults.reset"
_SCOPE = re.compile(r"Credential=[^/]*/[^/]*/[^/]*/([^/]+)/")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message says which part and why."""


@dataclass
class FaultRule:
    """Inject `kind` into a `rate` share of the requests to `service`/`action`."""

    service: str
    action: str
    kind: str
    rate: float
    times: int | None = None
    seconds: float = 1.0
    match: str | None = None
    injected: int = field(default=0, compare=False)

    def matches(self, service: str, action: str, body: bytes) -> bool:
        return (
            self.service in ("*", service)
            and self.action in ("*", action)
            and (self.times is None or self.injected < self.times)
            and (self.match is None or self.match.encode() in body)
        )


def parse_spec(spec: str) -> list[FaultRule]:
    """The rules of a spec (module docstring); FaultSpecError names the bad part."""
    rules = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            rules.append(_parse_rule(part))
    return rules


def _parse_rule(part: str) -> FaultRule:
    target, eq, fault = part.partition("=")
    service, colon, action = target.partition(":")
    if not eq or not colon or not service or not action:
        raise FaultSpecError(f"fault rule {part!r}: expected SERVICE:ACTION=KIND:RATE")
    kind, _, rest = fault.partition(":")
    if kind not in KINDS:
        raise FaultSpecError(f"fault rule {part!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    rate_text, *options = rest.split(":") if rest else ["1"]
    try:
        rate = float(rate_text)
    except ValueError:
        raise FaultSpecError(f"fault rule {part!r}: rate {rate_text!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultSpecError(f"fault rule {part!r}: rate must be between 0 and 1")
    rule = FaultRule(service.lower(), action, kind, rate)
    for option in options:
        name, _, value = option.partition("=")
        try:
            if name == "times":
                rule.times = int(value)
            elif name == "seconds":
                rule.seconds = float(value)
            elif name == "match" and value:
                rule.match = value
            else:
                raise FaultSpecError(
                    f"fault rule {part!r}: unknown option {option!r} (times=, seconds=, match=)"
                )
        except ValueError as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"fault rule {part!r}: {name} needs a number") from None
    return rule


class FaultInjector:
    """The rules in force and the seeded generator; `wrap` puts it in front of an app."""

    def __init__(self, spec: str = "", seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.seed = 0
        self._rng: random.Random = random.Random()  # nosec B311: not crypto
        self.configure(spec, seed)

    def configure(self, spec: str, seed: int | None = None) -> None:
        """Replace the rules (an empty spec turns faults off) and reseed."""
        rules = parse_spec(spec)
        with self._lock:
            self.rules = rules
            self.seed = secrets.randbelow(2**31) if seed is None else seed
            self._rng = random.Random(self.seed)  # nosec B311: not crypto

    def state(self) -> dict[str, Any]:
        """The rules with how often each was injected, and the seed (to reproduce a run)."""
        with self._lock:
            return {"seed": self.seed, "rules": [asdict(r) for r in self.rules]}

    def pick(self, service: str, action: str, body: bytes) -> FaultRule | None:
        """The fault to inject into this request, if any (counted as injected)."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(service, action, body) and self._rng.random() < rule.rate:
                    rule.injected += 1
                    return rule
        return None

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """A WSGI app that serves the control endpoint and injects faults into `app`."""

        def faulty(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == CONTROL_PATH:
                return self._control(environ, start_response)
            if path == "/moto-api/reset":
                self.configure("")  # a reset emulator starts without faults, as tests expect
            if not self.rules or path.startswith("/moto-api"):
                return app(environ, start_response)
            body = _read_body(environ)
            service, action = _service(environ), _action(environ, body)
            rule = self.pick(service, action, body)
            if rule is None:
                return app(environ, start_response)
            return _inject(rule, service, environ, start_response, app)

        return faulty

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method in ("POST", "PUT"):
            try:
                data = json.loads(_read_body(environ) or b"{}")
                seed = data.get("seed")
                self.configure(str(data.get("spec", "")), None if seed is None else int(seed))
            except (ValueError, TypeError, AttributeError) as exc:
                return _json(start_response, 400, {"message": f"bad fault spec: {exc}"})
        elif method == "DELETE":
            self.configure("")
        return _json(start_response, 200, self.state())


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back so that moto reads it as sent."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _service(environ: dict[str, Any]) -> str:
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1).lower() if found else ""


def _action(environ: dict[str, Any], body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return str(target.rsplit(".", 1)[-1])
    found = re.search(rb"(?:^|&)Action=([A-Za-z]+)", body)
    return found.group(1).decode() if found else ""


# (HTTP status, DynamoDB error code, SQS error code) of each error kind.
_ERRORS = {
    "throttle": (400, "ThrottlingException", "ThrottlingException"),
    "capacity": (400, "ProvisionedThroughputExceededException", "RequestThrottled"),
    "500": (500, "InternalServerError", "InternalError"),
    "503": (503, "ServiceUnavailable", "ServiceUnavailable"),
}


def _inject(
    rule: FaultRule,
    service: str,
    environ: dict[str, Any],
    start_response: StartResponse,
    app: WsgiApp,
) -> Iterable[bytes]:
    if rule.kind == "delay":
        time.sleep(rule.seconds)
        return app(environ, start_response)
    if rule.kind in ("reset", "lost"):
        if rule.kind == "lost":
            # Applied in full, answer and all, then thrown away.
            answer = app(environ, lambda *a, **k: lambda _data: None)
            for _ in answer:
                pass
            getattr(answer, "close", lambda: None)()
        environ[_RESET] = True
        raise ConnectionResetError("fault injected: connection reset")
    status, dynamodb_code, other_code = _ERRORS[rule.kind]
    code = dynamodb_code if service == "dynamodb" else other_code
    message = f"fault injected: {rule.kind}"
    if environ.get("HTTP_X_AMZ_TARGET"):
        prefix = (
            "com.amazonaws.dynamodb.v20120810" if service == "dynamodb" else "com.amazonaws.sqs"
        )
        body = json.dumps({"__type": f"{prefix}#{code}", "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.0")]
        if service != "dynamodb":
            # SQS's JSON protocol carries the query-compatible code here too.
            headers.append(("x-amzn-query-error", f"{code};Sender"))
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {'Service Unavailable' if status == 503 else 'Error'}", headers)
    return [body]


def _json(start_response: StartResponse, status: int, data: Any) -> Iterable[bytes]:
    body = json.dumps(data).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Bad Request'}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def request_handler() -> type[Any]:
    """moto's request handler, able to reset a connection when the injector says so."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class FaultingRequestHandler(MotoRequestHandler):
        def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
            # No answer was sent: the connection cannot carry another request.
            self.close_connection = True

        def finish(self) -> None:
            super().finish()
            if getattr(self, "environ", {}).get(_RESET):
                # Linger 0: close sends RST, as a peer or a middlebox dropping the
                # connection does, rather than an orderly FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()

    return FaultingRequestHandler


def set_faults(url: str, spec: str, seed: int | None = None) -> dict[str, Any]:
    """Replace the faults of the emulator at `url` (its control endpoint); its state."""
    import urllib.request

    data = json.dumps({"spec": spec, "seed": seed}).encode()
    req = urllib.request.Request(f"{url}{CONTROL_PATH}", data=data, method="POST")  # noqa: S310
    # The URL is an emulator's own http:// address, never user input.
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310  # nosec B310
        return json.loads(resp.read())  # type: ignore[no-any-return]


def fault_state(url: str) -> dict[str, Any]:
    """The rules in force at the emulator at `url` and how often each was injected."""
    import urllib.request

    # The emulator's own http:// address (see set_faults).
    with urllib.request.urlopen(f"{url}{CONTROL_PATH}", timeout=10) as resp:  # noqa: S310  # nosec B310
        return json.loads(resp.read())  # type: ignore[no-any-return]
