"""The local gateway's own defences: per-key throttling (429), HTTPS, unknown methods.

The gateway runs in-process on a loopback port with stand-in authorizer and API
functions, so these tests see only what a client sees: status codes and bodies.
"""

from __future__ import annotations

import json
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from stratoq.local import tls
from stratoq.local.gateway import Gateway, GatewayServer
from stratoq.local.throttle import KeyThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    throttle = KeyThrottle(rate=2.0, burst=3, clock=clock)
    assert [throttle.allow("k") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2/s
    assert [throttle.allow("k") for _ in range(2)] == [True, False]
    clock.now += 100  # refills up to the burst, not beyond
    assert [throttle.allow("k") for _ in range(4)] == [True, True, True, False]


def test_buckets_are_per_key_and_bounded() -> None:
    clock = Clock()
    throttle = KeyThrottle(rate=1.0, burst=1, clock=clock, max_buckets=2)
    assert throttle.allow("a") and not throttle.allow("a")
    assert throttle.allow("b")  # another key has its own bucket
    assert throttle.allow("c")  # evicts the least recently used ("a") ...
    assert throttle.allow("a")  # ... which starts full again


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        KeyThrottle(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        KeyThrottle(rate=1, burst=0)


# ------------------------------------------------------------ over HTTP(S)
def authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["headers"].get("x-api-key") != "good":
        raise Exception("Unauthorized")
    return {
        "principalId": "k",
        "policyDocument": {"Statement": [{"Effect": "Allow", "Action": "x", "Resource": "*"}]},
        "context": {"tenant": "t", "scopes": "admin", "key_id": "k"},
    }


def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps({"path": event["path"]})}


@pytest.fixture
def throttled() -> Iterator[str]:
    # A rate so low that no token comes back while the test runs.
    gateway = Gateway(api, authorizer, throttle=KeyThrottle(rate=0.001, burst=2))
    server = GatewayServer(gateway, "127.0.0.1", 0).start()
    try:
        yield server.url
    finally:
        server.stop()


def call(url: str, key: str | None, http: urllib3.PoolManager | None = None) -> tuple[int, Any]:
    headers = {"x-api-key": key} if key is not None else {}
    resp = (http or urllib3.PoolManager(retries=False)).request("GET", url, headers=headers)
    return resp.status, json.loads(resp.data)


def test_a_key_over_its_limit_gets_429(throttled: str) -> None:
    url = throttled + "/v1/tasks"
    assert call(url, "good")[0] == 200
    assert call(url, "good")[0] == 200
    assert call(url, "good") == (429, {"message": "Too Many Requests"})
    # Unknown keys are throttled too (before the authorizer runs) ...
    assert call(url, "guess-1")[0] == 401
    assert call(url, "guess-1")[0] == 401
    assert call(url, "guess-1") == (429, {"message": "Too Many Requests"})
    # ... and a missing key is refused before any bucket is spent.
    assert call(url, None) == (401, {"message": "Unauthorized"})
    assert call(throttled + "/health", None)[0] == 200  # public route: not throttled by key


def test_only_the_consoles_files_skip_the_authorizer(throttled: str) -> None:
    # The template's Console and ConsoleFiles events: GET /console and /console/{name}.
    assert call(throttled + "/console", None) == (200, {"path": "/console"})
    assert call(throttled + "/console/app.js", None) == (200, {"path": "/console/app.js"})
    # Deeper paths, other methods and look-alike prefixes still need a key.
    for path in ("/console/a/b", "/consoles", "/console/../v1/tasks"):
        assert call(throttled + path, None) == (401, {"message": "Unauthorized"}), path
    post = urllib3.PoolManager(retries=False).request("POST", throttled + "/console")
    assert post.status == 401


def test_unsupported_methods_are_a_client_error(throttled: str) -> None:
    resp = urllib3.PoolManager(retries=False).request("TRACE", throttled + "/v1/tasks")
    assert resp.status == 405
    assert json.loads(resp.data) == {"message": "Method Not Allowed"}


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, tls.DevCertificate]]:
    cert = tls.generate(tmp_path / "tls")
    gateway = Gateway(api, authorizer)
    server = GatewayServer(gateway, "127.0.0.1", 0, ssl_context=cert.server_context()).start()
    try:
        yield server.url, cert
    finally:
        server.stop()


def test_https_with_the_generated_certificate(https: tuple[str, tls.DevCertificate]) -> None:
    url, cert = https
    assert url.startswith("https://127.0.0.1:")
    trusting = urllib3.PoolManager(ca_certs=str(cert.ca_bundle), retries=False)
    assert call(url + "/v1/x", "good", trusting) == (200, {"path": "/v1/x"})
    # The default trust store does not know the dev CA: verification fails.
    with pytest.raises(urllib3.exceptions.SSLError):
        urllib3.PoolManager(retries=False).request("GET", url + "/health")
    # Plain HTTP on the HTTPS port gets no answer, and the server keeps serving.
    with pytest.raises(urllib3.exceptions.HTTPError):
        urllib3.PoolManager(retries=False).request("GET", url.replace("https", "http") + "/health")
    assert call(url + "/health", None, trusting)[0] == 200


def test_the_certificate_files(tmp_path: Path) -> None:
    cert = tls.generate(tmp_path / "tls", "127.0.0.1")
    assert stat.S_IMODE(cert.key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in cert.ca_bundle.read_bytes()  # the CA key is never written
    # A strict client (Python's default context) accepts the chain for 127.0.0.1.
    context = ssl.create_default_context(cafile=str(cert.ca_bundle))
    if hasattr(ssl, "VERIFY_X509_STRICT"):
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    server_context = cert.server_context()
    assert server_context.minimum_version >= ssl.TLSVersion.TLSv1_2
    gateway = Gateway(api, authorizer)
    server = GatewayServer(gateway, "127.0.0.1", 0, ssl_context=server_context).start()
    try:
        http = urllib3.PoolManager(ssl_context=context, retries=False)
        assert call(server.url + "/health", None, http)[0] == 200
    finally:
        server.stop()
