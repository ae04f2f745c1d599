"""Test helpers for projects that use stratoq (needs the `local` extra).

The pytest plugin (`stratoq.testing.plugin`, registered as a `pytest11` entry point, so
installing stratoq is enough) gives a project's tests two fixtures:

- `stratoq_eager`: eager mode, one per test. `enqueue` runs the task synchronously in
  this process, through the production worker (the Lambda worker function, its store,
  transport and timeout), against moto's in-process AWS; retries run at once.
- `stratoq_stack`: `stratoq dev` in a child process, one per session; a `Client`.

Outside pytest, `with stratoq.testing.eager("myproject.tasks") as sq:` is eager mode
for a block. See docs/testing.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratoq.testing.eager import Eager, EagerClock, EagerError, default_tasks_module, eager

__all__ = ["Eager", "EagerClock", "EagerError", "default_tasks_module", "eager"]


def __getattr__(name: str) -> Any:
    # Imported on first use: pytest loads the plugin beside this package in every run
    # of a project that has stratoq installed, whether its tests use eager mode or not.
    if name in __all__:
        return getattr(importlib.import_module("stratoq.testing.eager"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
