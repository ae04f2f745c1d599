"""`stratoq worker --processes P --metrics-port N`: one /metrics for every poller process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import urllib3
from prometheus_client.parser import text_string_to_metric_families

from stratoq.core.models import TaskRequest
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.support.procs import stratoq, wait_for
from tests.support.prometheus import free_port

NO_BACKOFF = {"base_seconds": 0, "jitter": False}


def scrape(
    http: urllib3.PoolManager, url: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    try:
        text = http.request("GET", url).data.decode()
    except urllib3.exceptions.HTTPError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def heartbeat_pids(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> set[int]:
    return {
        int(dict(labels)["pid"])
        for (n, labels), _ in samples.items()
        if n == "stratoq_worker_heartbeat_timestamp_seconds"
    }


def test_counts_add_up_over_processes_and_survive_a_restart(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    http = urllib3.PoolManager(timeout=5, retries=False)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    args = ("worker", "-c", "2", "--processes", "2", "--metrics-port", str(port))
    # A short lease: a receive the killed poller left open may swallow messages, which
    # then reappear after one lease (as on SQS), instead of after 30 s.
    env = {"TMPDIR": str(tmpdir), "STRATOQ_LEASE_SECONDS": "3"}
    with stratoq(settings, tmp_path, *args, env=env) as worker:
        pids = wait_for(
            lambda: (
                len(heartbeat_pids(scrape(http, url))) == 2 and heartbeat_pids(scrape(http, url))
            ),
            60,
            "both poller processes to report a heartbeat",
        )
        assert os.getpid() not in pids
        requests = [TaskRequest(name="echo", payload=i) for i in range(20)]
        requests += [
            TaskRequest(name="fail", payload={"times": 1}, backoff=NO_BACKOFF) for _ in range(4)
        ]
        core.enqueue_many(requests)

        def counted(succeeded: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            samples = scrape(http, url)
            ok = total(samples, "stratoq_tasks_succeeded_total") == succeeded
            return samples if ok else {}

        samples = wait_for(lambda: counted(24), 60, "24 successes on /metrics")
        assert total(samples, "stratoq_tasks_retried_total") == 4
        assert total(samples, "stratoq_tasks_started_total") == 28
        assert total(samples, "stratoq_task_run_seconds_count") == 28
        # Queue depth is read from SQS by the serving process.
        assert total(samples, "stratoq_queue_messages_dead_letter") == 0
        # Live gauges: the slots of both processes, once each.
        wait_for(
            lambda: (
                total(scrape(http, url), "stratoq_worker_slots_idle") == 4
                and total(scrape(http, url), "stratoq_worker_slots_busy") == 0
            ),
            30,
            "4 idle slots over 2 processes",
        )

        # A poller process dies: the supervisor restarts it. Its counts stay, its live
        # gauges go, and the new process reports its own.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        new = wait_for(
            lambda: (
                (found := heartbeat_pids(scrape(http, url))) - pids
                and victim not in found
                and len(found) == 2
                and found
            ),
            60,
            "the restarted poller's heartbeat to replace the dead one's",
        )
        assert victim not in new
        core.enqueue_many([TaskRequest(name="echo", payload=i) for i in range(10)])
        samples = wait_for(lambda: counted(34), 60, "34 successes on /metrics")
        assert (
            total(samples, "stratoq_worker_slots_idle")
            + total(samples, "stratoq_worker_slots_busy")
            == 4
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output()
    # The supervisor made the multiprocess directory and removed it on exit.
    assert not list(tmpdir.glob("stratoq-metrics-*"))


def test_metrics_port_in_use_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with stratoq(settings, tmp_path, "worker", "--metrics-port", str(port)) as worker:
            assert worker.wait(30) == 2
            assert f"cannot serve metrics on 127.0.0.1:{port}" in worker.output()
            assert "--metrics-port" in worker.output()
