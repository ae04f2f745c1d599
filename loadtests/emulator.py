"""moto server with a request counter, for benchmarks: `python -m loadtests.emulator`.

Every request is counted by AWS action at the emulator (X-Amz-Target or Action), so the
figures cover every client in every process, stratoq's and Celery's alike.
`GET /__counts` returns them as JSON; `POST /__counts/reset` clears them. Requests
whose User-Agent carries HARNESS_AGENT (a benchmark's own probes) are not counted.

The fault injector (stratoq.local.faults) sits inside the counter: no faults until a
spec is POSTed to /stratoq-faults, and a faulted request is counted as sent, so a run
with faults counts the retries they cost (loadtests/chaos.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

# Put in a harness client's User-Agent (botocore's user_agent_extra) to go uncounted.
HARNESS_AGENT = "stratoq-bench-harness"

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _action(environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        service, _, action = target.partition(".")
        return f"{service.split('_')[0]}.{action}"
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return f"query.{query['Action'][0]}"
    return f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO', '')[:40]}"


class Counting:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__counts"):
            with _lock:
                if path.endswith("/reset"):
                    _counts.clear()
                body = json.dumps(dict(_counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        counted = not path.startswith(("/moto-api", "/stratoq-faults"))
        if counted and HARNESS_AGENT not in environ.get("HTTP_USER_AGENT", ""):
            # SQS query protocol puts Action in a form body; read and put it back.
            if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                raw = environ["wsgi.input"].read(length)
                import io

                environ["wsgi.input"] = io.BytesIO(raw)
                form = parse_qs(raw.decode(errors="replace"))
                name = f"query.{form['Action'][0]}" if "Action" in form else _action(environ)
            else:
                name = _action(environ)
            with _lock:
                _counts[name] += 1
        return self.app(environ, start_response)


def main() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from stratoq.local.faults import FaultInjector, request_handler

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--stock", action="store_true", help="without stratoq.local.moto_patches")
    p.add_argument(
        "--unfair", action="store_true", help="moto's oldest-first receives (loadtests/fairness.py)"
    )
    args = p.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if not args.stock:
        from stratoq.local.moto_patches import install

        install(fair=not args.unfair)
    app = Counting(FaultInjector().wrap(DomainDispatcherApplication(create_backend_app)))
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=request_handler()
    )
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
