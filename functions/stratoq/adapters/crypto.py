"""Envelope encryption of task payloads and results: KMS data keys + AES-256-GCM.

A value is encrypted with a 256-bit data key from KMS `GenerateDataKey` under the
deployment's key (`STRATOQ_KMS_KEY_ID`), and stored with that data key in its encrypted
form. Two bindings keep a ciphertext where it belongs:

- the KMS encryption context `{"stratoq:tenant": <tenant>}`: a data key only decrypts
  for the tenant it was made for (and CloudTrail records the tenant of every Decrypt);
- the AES-GCM associated data (field, tenant, task id): a ciphertext copied to another
  task, another tenant or from `payload` to `result` fails authentication.

Data keys are cached, bounded and short-lived, as the AWS Encryption SDK's caching
materials manager does it: one encryption key per tenant, used for at most
`max_uses` values and `max_age` seconds, in a small LRU of tenants; decrypted data keys
in an LRU of their own with the same age limit. So a busy tenant costs one KMS call per
`max_uses` tasks, and a key disabled in KMS stops working here within `max_age`.

Stored form (a DynamoDB binary attribute):
    b"SQE1" | encrypted data key length (2 bytes, big endian) | encrypted data key
           | nonce (12 bytes) | AES-GCM ciphertext and tag
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratoq.core.errors import ConfigError, DecryptionError

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient

    from stratoq.core.settings import Settings

MAGIC = b"SQE1"
NONCE_BYTES = 12
CONTEXT_KEY = "stratoq:tenant"
# Defaults of the data key cache (see the module docstring).
MAX_USES = 10_000
MAX_AGE_SECONDS = 300.0
MAX_TENANTS = 64
MAX_DECRYPTED_KEYS = 1024
FETCH_STRIPES = 64


@dataclass
class _DataKey:
    aead: AESGCM
    encrypted: bytes
    created: float
    uses: int = 0


class _Lru:
    """A small thread-unsafe LRU map; the cipher holds the lock."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._items: OrderedDict[Any, _DataKey] = OrderedDict()

    def get(self, key: Any) -> _DataKey | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Any, value: _DataKey) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def pop(self, key: Any) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


def associated_data(field: str, tenant: str, task_id: str) -> bytes:
    """What a ciphertext is bound to, unambiguously encoded."""
    return b"stratoq:v1\x00" + json.dumps([field, tenant, task_id]).encode()


class PayloadCipher:
    """Encrypts and decrypts task values under one KMS key. Thread-safe."""

    def __init__(
        self,
        kms: KMSClient,
        key_id: str,
        *,
        max_uses: int = MAX_USES,
        max_age: float = MAX_AGE_SECONDS,
        max_tenants: int = MAX_TENANTS,
        max_decrypted_keys: int = MAX_DECRYPTED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kms = kms
        self.key_id = key_id
        self._max_uses = max_uses
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._encrypting = _Lru(max_tenants)
        self._decrypting = _Lru(max_decrypted_keys)
        # One KMS call per missing data key: threads that miss the same key at once (a
        # worker's slots at start) wait for the first one's call instead of each making
        # their own (16 calls -> 1 per key in the benchmark's 2x8 poller slots).
        self._fetching = [threading.Lock() for _ in range(FETCH_STRIPES)]
        # KMS calls made, for tests and the curious.
        self.kms_calls = 0

    # ------------------------------------------------------------------- values
    def encrypt(self, plaintext: bytes, *, field: str, tenant: str, task_id: str) -> bytes:
        key = self._key_for(tenant)
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, plaintext, associated_data(field, tenant, task_id))
        return MAGIC + struct.pack(">H", len(key.encrypted)) + key.encrypted + nonce + sealed

    def decrypt(self, blob: bytes, *, field: str, tenant: str, task_id: str) -> bytes:
        encrypted, nonce, sealed = _split(blob)
        aead = self._aead_for(encrypted, tenant)
        try:
            return aead.decrypt(nonce, sealed, associated_data(field, tenant, task_id))
        except InvalidTag:
            raise DecryptionError(
                f"the {field} of task {task_id} failed authentication (tampered or moved)"
            ) from None

    def encrypt_json(self, value: Any, *, field: str, tenant: str, task_id: str) -> bytes:
        text = json.dumps(value, separators=(",", ":")).encode()
        return self.encrypt(text, field=field, tenant=tenant, task_id=task_id)

    def decrypt_json(self, blob: bytes, *, field: str, tenant: str, task_id: str) -> Any:
        return json.loads(self.decrypt(blob, field=field, tenant=tenant, task_id=task_id))

    # --------------------------------------------------------------- data keys
    def _fetch_lock(self, name: object) -> threading.Lock:
        return self._fetching[hash(name) % FETCH_STRIPES]

    def _cached_key_for(self, tenant: str) -> _DataKey | None:
        now = self._clock()
        with self._lock:
            key = self._encrypting.get(tenant)
            if key is not None and key.uses < self._max_uses and now - key.created < self._max_age:
                key.uses += 1
                return key
        return None

    def _key_for(self, tenant: str) -> _DataKey:
        key = self._cached_key_for(tenant)
        if key is not None:
            return key
        with self._fetch_lock(("encrypt", tenant)):
            return self._cached_key_for(tenant) or self._new_key_for(tenant)

    def _new_key_for(self, tenant: str) -> _DataKey:
        now = self._clock()
        out = self._kms.generate_data_key(
            KeyId=self.key_id, KeySpec="AES_256", EncryptionContext={CONTEXT_KEY: tenant}
        )
        key = _DataKey(AESGCM(out["Plaintext"]), out["CiphertextBlob"], now, uses=1)
        with self._lock:
            self.kms_calls += 1
            self._encrypting.put(tenant, key)
            # The same key decrypts what it encrypted without another KMS call.
            self._decrypting.put((key.encrypted, tenant), key)
        return key

    def _cached_aead_for(self, encrypted: bytes, tenant: str) -> AESGCM | None:
        now = self._clock()
        with self._lock:
            key = self._decrypting.get((encrypted, tenant))
            if key is not None and now - key.created < self._max_age:
                return key.aead
        return None

    def _aead_for(self, encrypted: bytes, tenant: str) -> AESGCM:
        aead = self._cached_aead_for(encrypted, tenant)
        if aead is not None:
            return aead
        with self._fetch_lock((encrypted, tenant)):
            return self._cached_aead_for(encrypted, tenant) or self._decrypt_key(encrypted, tenant)

    def _decrypt_key(self, encrypted: bytes, tenant: str) -> AESGCM:
        now = self._clock()
        try:
            out = self._kms.decrypt(
                CiphertextBlob=encrypted, EncryptionContext={CONTEXT_KEY: tenant}
            )
        except self._kms.exceptions.InvalidCiphertextException:
            raise DecryptionError(
                "KMS refused the data key (wrong tenant, or not made by this deployment)"
            ) from None
        key = _DataKey(AESGCM(out["Plaintext"]), encrypted, now)
        with self._lock:
            self.kms_calls += 1
            self._decrypting.put((encrypted, tenant), key)
        return key.aead

    def forget(self) -> None:
        """Drop every cached data key (the next value asks KMS again)."""
        with self._lock:
            self._encrypting = _Lru(self._encrypting._max)
            self._decrypting = _Lru(self._decrypting._max)


def is_encrypted(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and bytes(value[:4]) == MAGIC


def _split(blob: bytes) -> tuple[bytes, bytes, bytes]:
    if not is_encrypted(blob) or len(blob) < 6:
        raise DecryptionError("not a stratoq ciphertext")
    (length,) = struct.unpack(">H", blob[4:6])
    start = 6 + length
    if len(blob) < start + NONCE_BYTES + 16:
        raise DecryptionError("truncated ciphertext")
    return (
        bytes(blob[6:start]),
        bytes(blob[start : start + NONCE_BYTES]),
        bytes(blob[start + NONCE_BYTES :]),
    )


def encode_value(
    value: Any, cipher: PayloadCipher | None, *, field: str, tenant: str, task_id: str
) -> str | bytes:
    """A task's payload or result as stored: ciphertext with a cipher, else JSON text."""
    if cipher is None:
        return json.dumps(value, separators=(",", ":"))
    return cipher.encrypt_json(value, field=field, tenant=tenant, task_id=task_id)


def decode_value(
    raw: Any, cipher: PayloadCipher | None, *, field: str, tenant: str, task_id: str
) -> Any:
    """The value `encode_value` stored. JSON text (stored in clear, e.g. before
    encryption was turned on) is read as it is."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return json.loads(raw)
    blob = bytes(getattr(raw, "value", raw))  # boto3's Binary wraps the bytes
    if cipher is None:
        raise DecryptionError(
            f"the {field} of task {task_id} is encrypted and no KMS key is configured "
            "(set STRATOQ_KMS_KEY_ID)"
        )
    return cipher.decrypt_json(blob, field=field, tenant=tenant, task_id=task_id)


def cipher_for(settings: Settings) -> PayloadCipher | None:
    """The cipher of a deployment, or None where storing in clear is explicitly allowed."""
    if settings.kms_key_id:
        from stratoq.adapters import aws

        kms: KMSClient = aws.client("kms", settings)
        return PayloadCipher(kms, settings.kms_key_id)
    if settings.allow_unencrypted:
        return None
    raise ConfigError(
        "no KMS key for payload encryption: set STRATOQ_KMS_KEY_ID (the stack's "
        "TaskDataKeyArn output), or STRATOQ_ALLOW_UNENCRYPTED=1 to store payloads in clear"
    )
