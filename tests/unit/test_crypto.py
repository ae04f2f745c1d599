"""Envelope encryption of payloads and results (stratoq.adapters.crypto) with an in-memory KMS."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratoq.adapters.crypto import (
    CONTEXT_KEY,
    DecryptionError,
    PayloadCipher,
    cipher_for,
    decode_value,
    encode_value,
    is_encrypted,
)
from stratoq.core.errors import ConfigError
from stratoq.core.settings import Settings


class FakeKms:
    """GenerateDataKey/Decrypt with KMS's contract: the encryption context must match."""

    class exceptions:  # mirrors boto3's client.exceptions
        class InvalidCiphertextException(Exception):
            pass

    def __init__(self) -> None:
        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self.generated = 0
        self.decrypted = 0

    def _aad(self, context: dict[str, str]) -> bytes:
        return repr(sorted(context.items())).encode()

    def generate_data_key(
        self, KeyId: str, KeySpec: str, EncryptionContext: dict[str, str]
    ) -> dict[str, Any]:
        assert KeySpec == "AES_256"
        self.generated += 1
        plaintext = os.urandom(32)
        nonce = os.urandom(12)
        blob = nonce + self._master.encrypt(nonce, plaintext, self._aad(EncryptionContext))
        return {"Plaintext": plaintext, "CiphertextBlob": blob, "KeyId": KeyId}

    def decrypt(self, CiphertextBlob: bytes, EncryptionContext: dict[str, str]) -> dict[str, Any]:
        self.decrypted += 1
        try:
            plaintext = self._master.decrypt(
                CiphertextBlob[:12], CiphertextBlob[12:], self._aad(EncryptionContext)
            )
        except Exception:
            raise self.exceptions.InvalidCiphertextException() from None
        return {"Plaintext": plaintext}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kms() -> FakeKms:
    return FakeKms()


def cipher(kms: FakeKms, **kwargs: Any) -> PayloadCipher:
    return PayloadCipher(kms, "arn:aws:kms:us-east-1:123456789012:key/k", **kwargs)  # type: ignore[arg-type]


WHERE = {"field": "payload", "tenant": "acme", "task_id": "t1"}


def test_round_trip_and_no_plaintext_in_the_ciphertext(kms: FakeKms) -> None:
    c = cipher(kms)
    blob = c.encrypt_json({"card": "4111-SECRET"}, **WHERE)
    assert is_encrypted(blob)
    assert b"SECRET" not in blob
    assert c.decrypt_json(blob, **WHERE) == {"card": "4111-SECRET"}


def test_same_value_encrypts_differently_each_time(kms: FakeKms) -> None:
    c = cipher(kms)
    assert c.encrypt_json("x", **WHERE) != c.encrypt_json("x", **WHERE)


@pytest.mark.parametrize(
    "moved",
    [
        {"field": "result"},  # payload copied into the result attribute
        {"task_id": "t2"},  # copied to another task of the same tenant
        {"tenant": "other"},  # copied to another tenant's task
    ],
)
def test_a_ciphertext_moved_elsewhere_does_not_decrypt(kms: FakeKms, moved: dict[str, str]) -> None:
    c = cipher(kms)
    blob = c.encrypt_json("secret", **WHERE)
    with pytest.raises(DecryptionError):
        c.decrypt_json(blob, **{**WHERE, **moved})


def test_another_tenants_context_is_refused_by_kms(kms: FakeKms) -> None:
    blob = cipher(kms).encrypt_json("secret", **WHERE)
    fresh = cipher(kms)  # nothing cached: the data key must come from KMS
    with pytest.raises(DecryptionError, match="KMS refused"):
        fresh.decrypt_json(blob, **{**WHERE, "tenant": "other"})
    assert fresh.decrypt_json(blob, **WHERE) == "secret"


def test_tampered_ciphertext_fails_authentication(kms: FakeKms) -> None:
    c = cipher(kms)
    blob = bytearray(c.encrypt_json("secret", **WHERE))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError, match="failed authentication"):
        c.decrypt_json(bytes(blob), **WHERE)
    with pytest.raises(DecryptionError):
        c.decrypt_json(bytes(blob[:30]), **WHERE)
    with pytest.raises(DecryptionError):
        c.decrypt_json(b"not a ciphertext", **WHERE)


def test_data_key_is_reused_up_to_max_uses(kms: FakeKms) -> None:
    c = cipher(kms, max_uses=3)
    for i in range(7):
        c.encrypt_json(i, **{**WHERE, "task_id": f"t{i}"})
    assert kms.generated == 3  # 3 + 3 + 1 values


def test_data_key_expires_after_max_age(kms: FakeKms) -> None:
    clock = Clock()
    c = cipher(kms, max_age=60, clock=clock)
    blob = c.encrypt_json(1, **WHERE)
    c.encrypt_json(2, **WHERE)
    assert kms.generated == 1
    clock.now += 61
    c.encrypt_json(3, **WHERE)
    assert kms.generated == 2
    # The cached decryption of the old key has expired too: KMS is asked again.
    assert c.decrypt_json(blob, **WHERE) == 1
    assert kms.decrypted == 1


def test_each_tenant_has_its_own_data_key(kms: FakeKms) -> None:
    c = cipher(kms)
    c.encrypt_json(1, **WHERE)
    c.encrypt_json(1, **{**WHERE, "tenant": "other"})
    c.encrypt_json(1, **WHERE)
    assert kms.generated == 2
    assert kms.generated == c.kms_calls


def test_caches_are_bounded(kms: FakeKms) -> None:
    c = cipher(kms, max_tenants=2, max_decrypted_keys=2)
    blobs = [c.encrypt_json(i, **{**WHERE, "tenant": f"t{i}"}) for i in range(5)]
    assert kms.generated == 5
    c.encrypt_json(0, **{**WHERE, "tenant": "t0"})  # evicted: a new data key
    assert kms.generated == 6
    assert c.decrypt_json(blobs[1], **{**WHERE, "tenant": "t1"}) == 1  # evicted: KMS again
    assert kms.decrypted == 1


def test_decrypting_what_it_encrypted_needs_no_kms_call(kms: FakeKms) -> None:
    c = cipher(kms)
    blobs = [c.encrypt_json(i, **{**WHERE, "task_id": f"t{i}"}) for i in range(20)]
    assert [c.decrypt_json(b, **{**WHERE, "task_id": f"t{i}"}) for i, b in enumerate(blobs)] == [
        *range(20)
    ]
    assert (kms.generated, kms.decrypted) == (1, 0)


def test_encode_and_decode_values(kms: FakeKms) -> None:
    c = cipher(kms)
    stored = encode_value({"a": 1}, c, **WHERE)
    assert isinstance(stored, bytes)
    assert decode_value(stored, c, **WHERE) == {"a": 1}
    # In clear (allowed explicitly, or written before encryption was turned on).
    assert encode_value({"a": 1}, None, **WHERE) == '{"a":1}'
    assert decode_value('{"a":1}', c, **WHERE) == {"a": 1}
    assert decode_value(None, c, **WHERE) is None
    with pytest.raises(DecryptionError, match="STRATOQ_KMS_KEY_ID"):
        decode_value(stored, None, **WHERE)


def test_the_kms_context_names_the_tenant(kms: FakeKms) -> None:
    seen: list[dict[str, str]] = []
    original = kms.generate_data_key

    def spy(**kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs["EncryptionContext"])
        return original(**kwargs)

    kms.generate_data_key = spy  # type: ignore[method-assign]
    cipher(kms).encrypt_json(1, **WHERE)
    assert seen == [{CONTEXT_KEY: "acme"}]


def test_without_a_key_clear_storage_needs_an_explicit_setting() -> None:
    with pytest.raises(ConfigError, match="STRATOQ_KMS_KEY_ID"):
        cipher_for(Settings())
    assert cipher_for(Settings(allow_unencrypted=True)) is None
    s = Settings.from_env({"STRATOQ_ALLOW_UNENCRYPTED": "1"})
    assert s.allow_unencrypted is True
    with pytest.raises(ConfigError, match="STRATOQ_ALLOW_UNENCRYPTED"):
        Settings.from_env({"STRATOQ_ALLOW_UNENCRYPTED": "maybe"})
    configured = cipher_for(Settings(kms_key_id="alias/stratoq", aws_endpoint_url="http://x"))
    assert configured is not None
    assert configured.key_id == "alias/stratoq"


class SlowKms(FakeKms):
    """KMS with a round trip of 50 ms, so that threads starting together all miss."""

    def generate_data_key(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        time.sleep(0.05)
        return super().generate_data_key(*args, **kwargs)

    def decrypt(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        time.sleep(0.05)
        return super().decrypt(*args, **kwargs)


def run_together(count: int, work: Any) -> list[Any]:
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        start.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_threads_missing_the_same_data_key_share_one_kms_call() -> None:
    kms = SlowKms()
    c = cipher(kms)
    blobs = run_together(
        16, lambda i: c.encrypt_json(i, **{**WHERE, "tenant": "acme" if i % 2 else "beta"})
    )
    assert kms.generated == 2  # one per tenant, not one per thread
    reader = cipher(kms)  # another process: a cold cache of decrypted keys
    values = run_together(
        16,
        lambda i: reader.decrypt_json(blobs[i], **{**WHERE, "tenant": "acme" if i % 2 else "beta"}),
    )
    assert values == list(range(16))
    assert kms.decrypted == 2
