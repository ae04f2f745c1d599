"""Container health check: exit 0 when healthy, 1 when not.

With STRATOQ_METRICS_PORT set (see entrypoint.py) the process must answer /metrics;
without it (one-shot roles such as `provision`) it is enough that the main process
(PID 1) runs.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("STRATOQ_METRICS_PORT", "").strip()
    if port not in ("", "0"):
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return 0 if response.status == 200 else 1
        except OSError as exc:
            print(f"unhealthy: {url}: {exc}", file=sys.stderr)
            return 1
    try:
        with open("/proc/1/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return 1
    return 1 if state in ("Z", "X") else 0


if __name__ == "__main__":
    sys.exit(main())
