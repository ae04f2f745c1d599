"""The embedded AWS emulator: moto server in this process, on 127.0.0.1."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from stratoq.core.errors import StratoqError


class EmulatorError(StratoqError):
    """The emulator did not start or does not answer."""


class Emulator:
    """moto server on a free (or given) loopback port. `url` is the AWS endpoint."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        import logging

        from moto.server import ThreadedMotoServer

        from stratoq.local.moto_patches import install

        install()

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request

        if port:
            _check_free(host, port)
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._server.start()
        bound_host, bound_port = self._server.get_host_and_port()
        self.url = f"http://{bound_host}:{bound_port}"
        wait_ready(self.url)

    def reset(self) -> None:
        """Forget every resource and message (between tests)."""
        self.reset_at(self.url)

    @staticmethod
    def reset_at(url: str) -> None:
        req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
        # The URL is the emulator's own http:// address, never user input.
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310  # nosec B310
            pass

    def stop(self) -> None:
        self._server.stop()


def _check_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise EmulatorError(
                f"cannot start the emulator on {host}:{port}: {exc.strerror}; "
                "pick another port or stop what uses it"
            ) from None


def wait_ready(url: str, timeout: float = 15.0) -> None:
    """Poll the emulator until it answers; raise EmulatorError if it never does."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # The emulator's own http:// address (see reset_at).
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2):  # noqa: S310  # nosec B310
                return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
            time.sleep(0.1)
    raise EmulatorError(f"the AWS emulator at {url} did not answer within {timeout:.0f} s: {last}")
