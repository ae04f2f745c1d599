"""Load on the HTTP API with locust (pip install locust; not a test dependency).

    make run &                                   # the dev stack on :8080
    locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 60s \
        --host http://127.0.0.1:8080

The API key comes from STRATOQ_API_KEY or .stratoq/dev.json. Users enqueue single tasks,
batches of 100, and read them back, in the proportions of the task weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from locust import HttpUser, between, task  # type: ignore[import-not-found]


def _key() -> str:
    if os.environ.get("STRATOQ_API_KEY"):
        return os.environ["STRATOQ_API_KEY"]
    return str(json.loads(Path(".stratoq/dev.json").read_text())["api_key"])


class ApiUser(HttpUser):  # type: ignore[misc]
    wait_time = between(0.0, 0.2)

    def on_start(self) -> None:
        self.client.headers["x-api-key"] = _key()
        self.ids: list[str] = []

    @task(10)
    def enqueue(self) -> None:
        with self.client.post(
            "/v1/tasks", json={"name": "echo", "payload": {"n": 1}}, catch_response=True
        ) as resp:
            if resp.status_code == 202:
                self.ids.append(resp.json()["id"])
                resp.success()
            else:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")

    @task(2)
    def enqueue_batch(self) -> None:
        tasks = [{"name": "echo", "payload": i} for i in range(100)]
        self.client.post("/v1/tasks/batch", json={"tasks": tasks}, name="/v1/tasks/batch")

    @task(5)
    def read_back(self) -> None:
        if self.ids:
            self.client.get(f"/v1/tasks/{self.ids[-1]}", name="/v1/tasks/{id}")
