"""The order the tests are collected in, so that `--dist worksteal` keeps every xdist
worker busy until the end.

worksteal gives each of the N workers a contiguous Nth of the collection, and a worker
that runs dry steals the tail half of the longest queue. Collected as written (e2e,
then integration, then unit), one worker gets every end-to-end test and the last slow
module it reaches runs alone while the others sit idle: 402 s against 336 s and 346 s
for the other two workers, in a measured run. So the modules are dealt to N lanes
by estimated cost, longest first, each to the lane with the least so far (LPT), and
the lanes are laid end to end: each worker's Nth starts with its share of the slow
modules, and what is stolen from a tail is cheap. A module's tests stay together, so a
module-scoped fixture (a dev stack) is still built once.

Estimates: SLOW (seconds of one module alone, measured on 2 cores, 2026-12-03; a module
missing here gets its tier's cost per test). They only order the work: a wrong or stale
figure costs balance, never a test.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

SLOW = {
    "tests/e2e/test_chaos.py": 140,
    "tests/e2e/test_tutorial.py": 100,
    "tests/e2e/test_dev_restart.py": 65,
    "tests/e2e/test_docs_commands.py": 65,
    "tests/e2e/test_schemathesis.py": 60,
    "tests/e2e/test_testing_plugin.py": 50,
    "tests/e2e/test_scaffold.py": 45,
    "tests/e2e/test_poller.py": 45,
    "tests/e2e/test_api.py": 45,
    "tests/e2e/test_locks.py": 35,
    "tests/e2e/test_lambda_artifact.py": 30,
    "tests/e2e/test_bridge_rabbitmq.py": 30,
    "tests/e2e/test_metrics.py": 30,
    "tests/e2e/test_security.py": 25,
}
PER_TEST = {"e2e": 2.0, "integration": 0.3, "unit": 0.05}


def module_cost(path: str, tests: int) -> float:
    if path in SLOW:
        return float(SLOW[path])
    tier = path.split("/")[1] if path.count("/") > 1 else "unit"
    return PER_TEST.get(tier, 0.1) * tests


def balanced(items: list[pytest.Item], lanes: int, path_of: dict[int, str]) -> list[pytest.Item]:
    """`items` reordered into `lanes` contiguous runs: as many tests each (worksteal splits
    by count) and about the same estimated cost, each run starting with its slowest
    module. A module's tests stay together and in order."""
    if lanes < 2:
        return items
    modules: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        modules[path_of[id(item)]].append(item)

    def cost(path: str) -> float:
        return module_cost(path, len(modules[path]))

    def tier(path: str) -> str:
        parts = path.split("/")
        return parts[1] if len(parts) > 2 else ""

    heavy = sorted(
        (p for p in modules if p in SLOW or tier(p) == "e2e"), key=lambda p: (-cost(p), p)
    )
    light = sorted((p for p in modules if p not in heavy), key=lambda p: (-len(modules[p]), p))
    load = [0.0] * lanes
    count = [0] * lanes
    dealt: list[list[str]] = [[] for _ in range(lanes)]
    for path in heavy:  # by cost: the longest module first, to the least loaded lane
        lane = min(range(lanes), key=lambda i: (load[i], i))
        dealt[lane].append(path)
        load[lane] += cost(path)
        count[lane] += len(modules[path])
    for path in light:  # then the many cheap tests even out the counts
        lane = min(range(lanes), key=lambda i: (count[i], i))
        dealt[lane].append(path)
        count[lane] += len(modules[path])
    return [item for lane in dealt for path in lane for item in modules[path]]
