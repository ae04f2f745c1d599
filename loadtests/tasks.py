"""Benchmark task handlers (stratoq side)."""

from __future__ import annotations

from typing import Any

from stratoq import task


@task("noop")
def noop(payload: Any) -> None:
    return None
