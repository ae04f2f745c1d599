"""Tasks for the tracing tests: a parent that enqueues a child from its handler.

Names are prefixed `traced_` so that importing this module next to other tasks modules
in one test process registers nothing twice.
"""

from __future__ import annotations

import logging

from stratoq import task

logger = logging.getLogger("stratoq.tests.traced")


@task("traced_child")
def traced_child(n: int) -> int:
    """Logs a line (which carries the trace id while tracing) and adds one."""
    logger.info("traced child ran", extra={"n": n})
    return n + 1


@task("traced_parent")
def traced_parent(n: int) -> str:
    """Enqueues a child task from inside its handler; its result is the child's id."""
    return traced_child.enqueue(n).id


@task("traced_headers")
def traced_headers(_: object) -> dict[str, str]:
    """The trace headers the handler's own HTTP requests would carry (SDK client)."""
    from stratoq.observability import tracing

    return tracing.headers()
