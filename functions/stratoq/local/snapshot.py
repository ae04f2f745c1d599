"""The embedded emulator's state in a file: `stratoq dev --persist` survives a restart.

Every moto backend in use (tables and items, queues and their messages, keys, rules,
stacks) is pickled as one object graph, so objects shared between services (a stack's
resources are the tables and queues themselves) stay shared when restored. Locks and
conditions are recreated unheld, and private keys travel as PKCS#8 PEM (pickle cannot
copy either). A service whose state cannot be pickled at all (moto keeps closures in a
few) is left out with a warning rather than losing the rest.

The file holds task payloads and API key hashes: it is written for its owner only, and
read back only if its owner is the current user and nobody else may write it, since
unpickling runs code.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle  # nosec B403 - only the user's own file, checked in _open_own
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from stratoq.core.errors import ConfigError

FORMAT = 2


class SnapshotError(ConfigError):
    """A state file that this emulator cannot restore, or a state it cannot save."""


def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


def _private_key_types() -> tuple[type, ...]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    return (
        rsa.RSAPrivateKey,
        ec.EllipticCurvePrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
    )


class _Pickler(pickle.Pickler):
    _lock = type(threading.Lock())
    _rlock = type(threading.RLock())

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._keys = _private_key_types()

    def reducer_override(self, obj: Any) -> Any:
        # Nobody holds a lock of the restored emulator yet: new ones, unheld.
        if isinstance(obj, self._lock):
            return threading.Lock, ()
        if isinstance(obj, self._rlock):
            return threading.RLock, ()
        if isinstance(obj, threading.Condition):
            return threading.Condition, ()
        if isinstance(obj, self._keys):
            from cryptography.hazmat.primitives import serialization

            key: Any = obj
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _private_key, (pem,)
        return NotImplemented


def _header() -> dict[str, Any]:
    import moto

    return {"format": FORMAT, "moto": moto.__version__}


def _where(backends: Any) -> tuple[str, str] | None:
    """The module attribute that holds a BackendDict (service names are not unique)."""
    module_name = backends.backend.__module__
    for candidate in (module_name, module_name.rpartition(".")[0]):
        module = sys.modules.get(candidate)
        for name, value in vars(module).items() if module else ():
            if value is backends:
                return candidate, name
    return None


def _dumps(state: dict[tuple[str, str], Any]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer).dump(state)
    return buffer.getvalue()


def _picklable(part: dict[tuple[str, str], Any]) -> bool:
    try:
        _dumps(part)
    except RecursionError:
        return False
    except RuntimeError:
        return True  # changing under us, not unpicklable: the next try tells
    except Exception:
        return False
    return True


def _backends() -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], str], list[str]]:
    """Every moto backend in use, by where it lives; their service names; those left out."""
    from moto.core.base_backend import BackendDict

    state: dict[tuple[str, str], Any] = {}
    names: dict[tuple[str, str], str] = {}
    skipped: list[str] = []
    for backends in list(vars(BackendDict)["_instances"]):
        where = _where(backends)
        if where is None:
            skipped.append(backends.service_name)
            continue
        state[where] = {account: dict(regions) for account, regions in backends.items()}
        names[where] = backends.service_name
    return state, names, skipped


def _install(state: dict[tuple[str, str], Any]) -> None:
    for (module, name), accounts in state.items():
        backends = getattr(importlib.import_module(module), name)
        for account, regions in accounts.items():
            for region, backend in regions.items():
                dict.__setitem__(backends[account], region, backend)


def _state() -> tuple[bytes, list[str]]:
    state, names, skipped = _backends()
    for attempt in range(5):
        try:
            return _dumps(state), skipped
        except RecursionError as exc:
            raise SnapshotError(f"could not save the emulator's state: {exc}") from None
        except RuntimeError:
            # A request still running in the stopped server changed a dict mid-copy.
            time.sleep(0.2 * (attempt + 1))
        except Exception as exc:
            # A service holding what pickle cannot copy is left out; the rest is kept.
            failing = [where for where in state if not _picklable({where: state[where]})]
            if not failing:
                raise SnapshotError(f"could not save the emulator's state: {exc}") from None
            for where in failing:
                del state[where]
                skipped.append(names[where])
    raise SnapshotError(
        "the emulator's state kept changing while it was saved: a client was still using it"
    )


class _SharingPickler(_Pickler):
    """Keeps private keys by reference: they are immutable, and loading one from PEM
    checks it, which costs far more than the rest of a stack's state."""

    def __init__(self, file: BinaryIO, kept: list[Any]) -> None:
        super().__init__(file)
        self._kept = kept

    def persistent_id(self, obj: Any) -> int | None:
        if isinstance(obj, self._keys):
            self._kept.append(obj)
            return len(self._kept) - 1
        return None


class _SharingUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, kept: list[Any]) -> None:
        super().__init__(file)
        self._kept = kept

    def persistent_load(self, pid: Any) -> Any:
        return self._kept[pid]


class Checkpoint:
    """The state of every moto backend in this process, held in memory to return to.

    Tests provision a stack once and restore this after an emulator reset, instead of
    provisioning again for every test: the same state, at a fraction of the cost.
    """

    def __init__(self) -> None:
        self._kept: list[Any] = []
        buffer = io.BytesIO()
        _SharingPickler(buffer, self._kept).dump(_backends()[0])
        self._blob = buffer.getvalue()

    def restore(self) -> None:
        """Put every captured backend back (after a reset, with no request in flight)."""
        state = _SharingUnpickler(io.BytesIO(self._blob), self._kept).load()
        _install(state)


def save(path: Path) -> list[str]:
    """Write the state of every moto backend in this process (call with the server stopped).

    Returns the backends left out because they cannot be pickled. The file is written
    aside and renamed: a stop cut short never leaves half a file to restore.
    """
    try:
        blob, skipped = _state()
        header = pickle.dumps(_header(), protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(partial, flags, 0o600), "wb") as out:
            out.write(header)
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except (OSError, pickle.PicklingError) as exc:
        raise SnapshotError(f"could not save the emulator's state to {path}: {exc}") from None
    restored = _restored(path)
    restored.unlink(missing_ok=True)  # superseded
    return skipped


def _restored(path: Path) -> Path:
    return path.with_name(path.name + ".restored")


def _open_own(path: Path) -> BinaryIO | None:
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError:
        return None
    info = os.fstat(f.fileno())
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        f.close()
        raise SnapshotError(
            f"{path} is not yours alone (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}); loading it would run code from it. "
            "Delete it, or make it yours and not writable by others"
        )
    return f


def load(path: Path) -> bool:
    """Restore the state `save` wrote into this process's moto backends.

    The file is then moved aside to `<name>.restored` (deleted at the next successful
    save): a stack that dies without saving starts empty next time rather than from an
    older state in which finished tasks would run again, and a save that fails still
    leaves the restored state on disk. False: no file.
    """
    f = _open_own(path)
    if f is None:
        return False
    damaged = SnapshotError(
        f"{path} is not an emulator state file, or is damaged; "
        "delete it to start with an empty emulator"
    )
    with f:
        try:
            header = pickle.load(f)  # noqa: S301  # nosec B301 - our own file, see _open_own
        except Exception:
            raise damaged from None
        if not isinstance(header, dict):
            raise damaged
        if header != _header():
            raise SnapshotError(
                f"{path} was saved by moto {header.get('moto')} (format "
                f"{header.get('format')}), this is moto {_header()['moto']} (format "
                f"{FORMAT}); delete it to start with an empty emulator"
            )
        try:
            state = pickle.load(f)  # noqa: S301  # nosec B301 - as above
        except Exception:
            raise damaged from None
    _install(state)
    os.replace(path, _restored(path))
    return True
