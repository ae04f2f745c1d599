"""Container entry point: the `stratoq` CLI, with metrics reachable from outside.

`docker run IMAGE worker -c 8` runs `stratoq worker -c 8`. Prometheus must scrape the
container from another one, so /metrics listens on all interfaces here
(STRATOQ_METRICS_HOST defaults to 0.0.0.0; the CLI's own default is 127.0.0.1), on
STRATOQ_METRICS_PORT (0 turns it off):

- a command that serves its own metrics (`stratoq worker --metrics-port`) does so;
- for the other roles (the scheduler, ...) this process serves the process metrics
  itself, which also gives the image's health check something to ask.
"""

from __future__ import annotations

import argparse
import os
import sys


def serves_own_metrics(command: str) -> bool:
    """Whether `stratoq COMMAND` has a --metrics-port option of its own."""
    from stratoq.cli.main import parser

    for action in parser()._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return any("--metrics-port" in a.option_strings for a in sub._actions)
    return False


def main(argv: list[str]) -> int:
    os.environ.setdefault("STRATOQ_METRICS_HOST", "0.0.0.0")  # noqa: S104 - see above
    raw = os.environ.get("STRATOQ_METRICS_PORT", "").strip() or "0"
    if not raw.isdigit() or int(raw) > 65535:
        print(f"stratoq: STRATOQ_METRICS_PORT must be a port number, got {raw!r}", file=sys.stderr)
        return 2
    if int(raw) and argv and not argv[0].startswith("-") and not serves_own_metrics(argv[0]):
        from stratoq.observability.prometheus import MetricsServer

        MetricsServer(int(raw), os.environ["STRATOQ_METRICS_HOST"])
    from stratoq.cli.main import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
