"""A local API Gateway: HTTP requests become REST API proxy events (payload v1).

Like API Gateway with the template's REQUEST authorizer, it answers 401 without calling
anything when `x-api-key` is missing, runs the authorizer function otherwise (401 when
it raises "Unauthorized", 403 on an explicit Deny), copies the authorizer's context into
`requestContext.authorizer`, and calls the same API function that runs on Lambda.
With a `KeyThrottle` it answers 429 to a key over its rate (a usage plan's per-key
throttling) before the authorizer runs; with an SSL context it serves HTTPS.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aws_lambda_powertools import Logger

from stratoq.local.esm import FakeLambdaContext
from stratoq.local.throttle import KeyThrottle

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
logger = Logger(service="stratoq", child=True)

ACCOUNT = "123456789012"
API_ID = "local"
# Routes the template exempts from the authorizer (Auth: Authorizer: NONE): the health
# check, and the console's page and static files (`/console/{name}`, one path segment).
PUBLIC_ROUTES = frozenset({("GET", "/health"), ("GET", "/console")})
PUBLIC_PREFIXES = (("GET", "/console/"),)
# API Gateway's own hard limit on a request payload.
GATEWAY_MAX_BODY = 10 * 1024 * 1024


AUTHORIZER_FAILURE = "the API key could not be checked just now; try again shortly"


def _json_response(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _public(method: str, path: str) -> bool:
    """Whether API Gateway would run the route without the authorizer."""
    if (method, path) in PUBLIC_ROUTES:
        return True
    return any(
        method == m and path.startswith(p) and "/" not in path[len(p) :] for m, p in PUBLIC_PREFIXES
    )


class Gateway:
    """Turns (method, path, headers, body) into a proxy event and runs the handlers."""

    def __init__(
        self,
        api: Handler,
        authorizer: Handler,
        region: str = "us-east-1",
        stage: str = "v1",
        throttle: KeyThrottle | None = None,
    ) -> None:
        self._api = api
        self._authorizer = authorizer
        self._throttle = throttle
        self._region = region
        self._stage = stage

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path = parts.path or "/"
        if len(body) > GATEWAY_MAX_BODY:
            return _json_response(413, {"message": "Request Too Long"})
        query = parse_qs(parts.query, keep_blank_values=True)
        now = datetime.now(UTC)
        request_context: dict[str, Any] = {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "httpMethod": method,
            "path": f"/{self._stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "resourcePath": "/{proxy+}",
            "stage": self._stage,
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("user-agent", "")},
        }
        if not _public(method, path):
            denied, context = self._authorize(method, path, headers, query, request_context)
            if denied is not None:
                return denied
            request_context["authorizer"] = context
        try:
            text = body.decode()
            encoded = False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        event = {
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": {"proxy": path.lstrip("/")},
            "stageVariables": None,
            "requestContext": request_context,
            "body": text if body else None,
            "isBase64Encoded": encoded,
        }
        try:
            out = self._api(event, FakeLambdaContext(29, "stratoq-api"))
        except Exception:
            logger.exception("the API function raised")
            return _json_response(502, {"message": "Internal server error"})
        raw = out.get("body") or ""
        payload = base64.b64decode(raw) if out.get("isBase64Encoded") else raw.encode()
        response_headers = {k: str(v) for k, v in (out.get("headers") or {}).items()}
        for k, values in (out.get("multiValueHeaders") or {}).items():
            response_headers[k] = ", ".join(str(v) for v in values)
        return int(out.get("statusCode", 200)), response_headers, payload

    def _authorize(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        query: dict[str, list[str]],
        request_context: dict[str, Any],
    ) -> tuple[tuple[int, dict[str, str], bytes] | None, dict[str, Any]]:
        key = next((v for k, v in headers.items() if k.lower() == "x-api-key" and v), "")
        if not key:
            return _json_response(401, {"message": "Unauthorized"}), {}
        if self._throttle is not None and not self._throttle.allow(key):
            return _json_response(429, {"message": "Too Many Requests"}), {}
        arn = f"arn:aws:execute-api:{self._region}:{ACCOUNT}:{API_ID}/{self._stage}/{method}{path}"
        event = {
            "type": "REQUEST",
            "methodArn": arn,
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "queryStringParameters": {k: v[-1] for k, v in query.items()},
            "requestContext": request_context,
        }
        try:
            policy = self._authorizer(event, FakeLambdaContext(5, "stratoq-authorizer"))
        except Exception as exc:
            if str(exc) == "Unauthorized":
                return _json_response(401, {"message": "Unauthorized"}), {}
            # As the template's AUTHORIZER_FAILURE gateway response: the key could not
            # be checked (its table did not answer), so a 503 to try again.
            logger.exception("the authorizer raised")
            status, headers, body = _json_response(503, {"message": AUTHORIZER_FAILURE})
            return (status, {**headers, "Retry-After": "5"}, body), {}
        statements = policy.get("policyDocument", {}).get("Statement", [])
        if not any(s.get("Effect") == "Allow" for s in statements) or any(
            s.get("Effect") == "Deny" for s in statements
        ):
            return _json_response(
                403, {"message": "User is not authorized to access this resource"}
            ), {}
        context = {k: str(v) for k, v in (policy.get("context") or {}).items()}
        context["principalId"] = str(policy.get("principalId", ""))
        return None, context


class _Handler(BaseHTTPRequestHandler):
    server_version = "stratoq-local-gateway"
    protocol_version = "HTTP/1.1"
    gateway: Gateway

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access lines would repeat what the API logs as JSON

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > GATEWAY_MAX_BODY:
            status, headers, payload = _json_response(413, {"message": "Request Too Long"})
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            headers_in = {k.lower(): v for k, v in self.headers.items()}
            status, headers, payload = self.gateway.handle(
                self.command, self.path, headers_in, body, self.client_address[0]
            )
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _unsupported(self) -> None:
        # API Gateway serves only the methods above; anything else (TRACE, ...) is a
        # client error, not the server's 501.
        payload = json.dumps({"message": "Method Not Allowed"}).encode()
        self.send_response(405)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._unsupported
        raise AttributeError(name)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops the connection or fails the TLS handshake (plain HTTP to
        # the HTTPS port, an untrusted certificate): one line, no traceback.
        logger.info("connection failed", extra={"client": str(client_address[0])})


class GatewayServer:
    """The gateway on a loopback port, served from a background thread.

    With `ssl_context` it serves HTTPS; each connection's handshake runs in its own
    handler thread, so a slow or plain-HTTP client cannot hold up the others.
    """

    def __init__(
        self,
        gateway: Gateway,
        host: str = "127.0.0.1",
        port: int = 8080,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        handler = type("BoundHandler", (_Handler,), {"gateway": gateway})
        self._httpd = _Server((host, port), handler)
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        bound_port = self._httpd.server_address[1]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{bound_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="stratoq-gateway", daemon=True
        )

    def start(self) -> GatewayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def wait_http(url: str, timeout: float = 10.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            # Our own loopback http(s) URL, never user input.
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310  # nosec B310
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
