"""The embedded AWS emulator: moto server in this process, on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

from stratoq.core.errors import StratoqError
from stratoq.local.faults import FaultInjector


class EmulatorError(StratoqError):
    """The emulator did not start or does not answer."""


class Emulator:
    """moto server on a free (or given) loopback port. `url` is the AWS endpoint.

    Requests pass through a fault injector (`faults`, local/faults.py): none until a
    spec is given, here or later through its control endpoint.
    """

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", faults: FaultInjector | None = None
    ) -> None:
        import logging

        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        from stratoq.local.faults import request_handler
        from stratoq.local.moto_patches import install

        install()

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request

        if port:
            _check_free(host, port)
        self.faults = faults or FaultInjector()
        # moto's ThreadedMotoServer, with the injector around its app.
        app = self.faults.wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, app, True, request_handler=request_handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stratoq-emulator", daemon=True
        )
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"http://{bound_host!s}:{bound_port}"
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
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


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
