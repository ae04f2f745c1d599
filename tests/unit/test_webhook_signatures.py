"""Webhook signatures: what the documented verification code accepts and refuses."""

from __future__ import annotations

import json

import pytest

from stratoq.core.events import (
    SIGNATURE_HEADER,
    SignatureError,
    SubscriptionCache,
    check_event_types,
    check_url,
    retry_delay,
    sign,
)
from stratoq.webhooks import verify

SECRET = "whsec_test-secret-0123456789"
BODY = json.dumps({"id": "t1:succeeded:1", "type": "task.succeeded"}).encode()
NOW = 1_700_000_000


def headers(secret: str = SECRET, body: bytes = BODY, at: int = NOW) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(secret, body, at)}


def test_a_good_signature_gives_the_event() -> None:
    event = verify(SECRET, headers(), BODY, now=NOW + 10)
    assert event["id"] == "t1:succeeded:1"


def test_header_names_are_case_insensitive_and_bodies_may_be_text() -> None:
    lower = {k.lower(): v for k, v in headers().items()}
    assert verify(SECRET, lower, BODY.decode(), now=NOW)["type"] == "task.succeeded"


@pytest.mark.parametrize(
    ("hdrs", "body", "why"),
    [
        (headers(secret="whsec_another-secret-000000"), BODY, "does not match"),
        (headers(), BODY.replace(b"succeeded", b"failed"), "does not match"),
        ({}, BODY, "no Stratoq-Signature"),
        ({SIGNATURE_HEADER: "v1=abc"}, BODY, "no timestamp"),
    ],
)
def test_a_bad_signature_is_rejected(hdrs: dict[str, str], body: bytes, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        verify(SECRET, hdrs, body, now=NOW)


def test_a_replay_outside_the_window_is_rejected() -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, headers(at=NOW - 301), BODY, now=NOW)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, headers(at=NOW + 60), BODY, tolerance=30, now=NOW)
    assert verify(SECRET, headers(at=NOW - 299), BODY, now=NOW)


def test_urls_must_be_https_except_local_http_on_the_dev_stack() -> None:
    assert check_url("https://example.com/hook", allow_local_http=False) is None
    assert check_url("http://127.0.0.1:9000/hook", allow_local_http=True) is None
    assert check_url("http://127.0.0.1:9000/hook", allow_local_http=False) is not None
    assert check_url("http://example.com/hook", allow_local_http=True) is not None
    assert check_url("ftp://example.com", allow_local_http=False) is not None


def test_event_types_are_checked() -> None:
    assert check_event_types(["queued", "succeeded"]) is None
    assert "bogus" in (check_event_types(["succeeded", "bogus"]) or "")
    assert check_event_types([]) is not None


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    assert [retry_delay(n, 10) for n in (1, 2, 3)] == [10, 20, 40]
    assert retry_delay(30, 10) == 900


def test_the_subscription_cache_reads_once_per_ttl_per_tenant() -> None:
    reads: list[str] = []
    clock = [0]
    cache = SubscriptionCache(lambda t: reads.append(t) or [], 5000, lambda: clock[0])
    cache.of("a"), cache.of("a"), cache.of("b")
    assert reads == ["a", "b"]
    clock[0] = 5000
    cache.of("a")
    assert reads == ["a", "b", "a"]
