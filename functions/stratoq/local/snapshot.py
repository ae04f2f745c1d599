"""The embedded emulator's state in a file: `stratoq dev --persist` survives a restart.

Every moto backend in use (tables and items, queues and their messages, keys, rules,
stacks) is pickled as one object graph, so objects shared between services (a stack's
resources are the tables and queues themselves) stay shared when restored. Locks and
conditions are recreated empty, and private keys travel as PKCS#8 PEM (pickle cannot
copy either). The file holds task payloads and API key hashes, so it is written for its
owner only; it is read back only from the path the owner gave, like any of their files.
"""

from __future__ import annotations

import io
import os
import pickle  # nosec B403 - the file is the user's own, written by save() below
import threading
from pathlib import Path
from typing import Any

from stratoq.errors import ConfigError

FORMAT = 1


class SnapshotError(ConfigError):
    """A state file that this emulator cannot restore."""


def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


class _Pickler(pickle.Pickler):
    _lock_types = (type(threading.Lock()), type(threading.RLock()))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._lock_types):
            return type(obj), ()  # nobody holds a lock of the restored emulator yet
        if isinstance(obj, threading.Condition):
            return threading.Condition, ()
        if _is_private_key(obj):
            from cryptography.hazmat.primitives import serialization

            pem = obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _private_key, (pem,)
        return NotImplemented


def _is_private_key(obj: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    types = (
        rsa.RSAPrivateKey,
        ec.EllipticCurvePrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
    )
    return isinstance(obj, types)


def _header() -> dict[str, Any]:
    import moto

    return {"format": FORMAT, "moto": moto.__version__}


def save(path: Path) -> None:
    """Write the state of every moto backend in this process (call with no requests running)."""
    from moto.core.base_backend import BackendDict

    state = {
        backends.service_name: {account: dict(regions) for account, regions in backends.items()}
        for backends in vars(BackendDict)["_instances"]
    }
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((_header(), state))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    # Written aside and renamed: a stop cut short never leaves half a file to restore.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(buffer.getvalue())
    os.replace(partial, path)


def load(path: Path) -> bool:
    """Restore the state `save` wrote into this process's moto backends, then delete the file.

    The file is consumed: a stack that dies without saving starts empty next time rather
    than from an older state in which finished tasks would run again. False: no file.
    """
    from moto.backends import get_backend

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    try:
        header, state = pickle.loads(raw)  # noqa: S301  # nosec B301 - see the module doc
    except Exception:
        raise SnapshotError(
            f"{path} is not an emulator state file, or is damaged; "
            "delete it to start with an empty emulator"
        ) from None
    if header != _header():
        raise SnapshotError(
            f"{path} was saved by moto {header.get('moto')} (format {header.get('format')}), "
            f"this is moto {_header()['moto']}; delete it to start with an empty emulator"
        )
    for service, accounts in state.items():
        backends: Any = get_backend(service)
        for account, regions in accounts.items():
            for region, backend in regions.items():
                dict.__setitem__(backends[account], region, backend)
    path.unlink()
    return True
