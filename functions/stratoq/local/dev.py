"""`stratoq dev`: the whole stack on one machine, on the embedded emulator.

moto server in this process -> template.yaml provisioned on it -> the local API Gateway
(authorizer + API functions, the Lambda code) -> workers (pollers and/or the Lambda
worker fed by a local event source mapping) -> Prometheus metrics. Ctrl-C or SIGTERM
stops everything, letting running tasks finish first.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratoq.core.errors import ConfigError
from stratoq.core.settings import Settings
from stratoq.observability.metrics import Metrics
from stratoq.observability.prometheus import MetricsServer, PrometheusRecorder
from stratoq.observability.queue_gauges import QueueWatch
from stratoq.runtime.signals import on_stop_signals
from stratoq.services.app import Services

STATE_FILE = Path(".stratoq") / "dev.json"


@dataclass(frozen=True)
class DevOptions:
    port: int = 8080
    host: str = "127.0.0.1"
    aws_port: int = 0
    metrics_port: int = 9464
    workers: int = 4
    lambda_workers: int = 0
    api_key: str | None = None
    tasks: str | None = None
    state_file: Path = STATE_FILE
    clock_speed: float = 1.0
    # Serve the API over HTTPS with a locally generated certificate (local/tls.py).
    tls: bool = False
    # Save the emulator's state at stop and restore it at start (local/snapshot.py).
    persist: bool = False
    # Faults to inject into the emulator's answers once the stack is up (local/faults.py).
    faults: str = ""
    faults_seed: int | None = None

    @property
    def emulator_state(self) -> Path:
        return self.state_file.parent / "emulator.state"


class DevStack:
    """Starts and stops the pieces; `start()` returns the facts written to dev.json."""

    def __init__(self, options: DevOptions) -> None:
        self.options = options
        # Workers stop first (they drain), then the gateway, then the emulator.
        self._worker_stops: list[Any] = []
        self._stops: list[Any] = []
        self._threads: list[threading.Thread] = []
        self.restored = False

    def start(self) -> dict[str, str]:
        from stratoq.api.app import ApiFunction
        from stratoq.handlers.authorizer import Authorizer
        from stratoq.local.emulator import Emulator
        from stratoq.local.gateway import Gateway, GatewayServer
        from stratoq.local.provision import DEV_POLL_WAIT_SECONDS, provision
        from stratoq.local.throttle import KeyThrottle
        from stratoq.services.app import Services

        o = self.options
        emulator = Emulator(port=o.aws_port)
        self._stops.append(emulator.stop)
        if o.persist:
            from stratoq.local import snapshot

            # Before anything is created: provisioning finds the restored stack as it is.
            self.restored = snapshot.load(o.emulator_state)
            self._stops.append(self._save_state)
        base = Settings.from_env().with_(
            aws_endpoint_url=emulator.url,
            poll_wait_seconds=DEV_POLL_WAIT_SECONDS,
            # Webhooks may reach a receiver on this machine over plain http.
            webhook_allow_local_http=True,
        )
        if "STRATOQ_CHECK_TASK_NAMES" not in os.environ:
            # The dev stack runs the workers' code, so its API knows their task names: a
            # typo is a 400 now rather than a failed task later.
            base = base.with_(check_task_names=True)
        if o.tasks:
            base = base.with_(tasks_module=o.tasks)
        settings = provision(base)
        # This process's composition root: the gateway's functions, the pollers, the
        # Lambda-style consumers and the rule clock all share it.
        recorder = PrometheusRecorder()
        services = Services(settings, metrics=Metrics([recorder]))
        services.load_tasks()

        key, _ = services.keys.create(
            settings.operator_tenant, ["admin"], "bootstrap", key=o.api_key or None
        )
        tls_facts: dict[str, str] = {}
        ssl_context = None
        if o.tls:
            from stratoq.local import tls

            cert = tls.generate(o.state_file.parent.resolve() / "tls", o.host)
            ssl_context = cert.server_context()
            tls_facts["ca_bundle"] = str(cert.ca_bundle)
        throttle = KeyThrottle(settings.api_rate_limit, settings.api_burst_limit)
        try:
            server = GatewayServer(
                Gateway(
                    ApiFunction(services),
                    Authorizer(services),
                    settings.region,
                    throttle=throttle,
                ),
                o.host,
                o.port,
                ssl_context=ssl_context,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the API on {o.host}:{o.port}: {exc.strerror}; use --port"
            ) from None
        server.start()
        self._stops.insert(0, server.stop)

        if o.metrics_port:
            try:
                metrics_server = MetricsServer(o.metrics_port, o.host, recorder)
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics on {o.host}:{o.metrics_port}: {exc.strerror}; "
                    "use --metrics-port (0 turns metrics off)"
                ) from None
            self._stops.insert(0, metrics_server.stop)
            from stratoq.local.queue_age import moto_oldest_age

            # Queue depth from SQS, and the oldest message's age from moto in this process.
            metrics_server.watch(
                QueueWatch(
                    services.transport,
                    list(settings.queues),
                    oldest_age=moto_oldest_age(settings.region),
                    ttl=1.0,
                )
            )
        # After provisioning and the bootstrap key: the stack starts whatever the spec.
        emulator.faults.configure(o.faults, o.faults_seed)
        self._start_workers(services)
        self._start_clock(services)
        self._start_webhooks(services)

        facts = {
            "api_url": server.url,
            "api_key": key,
            "metrics_url": f"http://{o.host}:{o.metrics_port}/metrics" if o.metrics_port else "",
            "aws_endpoint_url": emulator.url,
            **tls_facts,
        }
        o.state_file.parent.mkdir(parents=True, exist_ok=True)
        # Whole or absent: a CLI, SDK or script that polls for the file must never read
        # it half written. Written private from the start: it holds an admin key.
        partial = o.state_file.with_name(f".{o.state_file.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(facts, indent=2) + "\n")
        os.replace(partial, o.state_file)
        return facts

    def _start_workers(self, services: Services) -> None:
        from stratoq.handlers.worker import WorkerFunction
        from stratoq.local.esm import EventSourceMapping
        from stratoq.runtime.poller import Poller

        o = self.options
        settings = services.settings
        if o.workers:
            poller = Poller(services, o.workers, shutdown_grace=30.0)
            self._spawn(poller.run, "stratoq-poller")
            self._worker_stops.append(poller.stop)
        sqs, transport = services.sqs, services.transport
        handler = WorkerFunction(services)
        for i in range(o.lambda_workers):
            # Every key, priority queues included: one consumer each, as the template
            # gives the worker function one event source mapping per priority queue.
            for queue in settings.queues:
                esm = EventSourceMapping(sqs, transport, queue, handler, region=settings.region)
                self._spawn(esm.run, f"stratoq-esm-{queue}-{i}")
                self._worker_stops.append(esm.stop)

    def _start_clock(self, services: Services) -> None:
        from stratoq.handlers.scheduler import SchedulerFunction
        from stratoq.local.clock import RuleClock

        settings = services.settings
        fire = SchedulerFunction(services)
        clock = RuleClock(
            services.events,
            lambda event: fire(event, None),
            settings.scheduler_arn,
            region=settings.region,
            speed=self.options.clock_speed,
        )
        self._spawn(clock.run, "stratoq-rule-clock")
        self._worker_stops.append(clock.stop)

    def _start_webhooks(self, services: Services) -> None:
        from stratoq.local.webhooks import LocalDeliverer

        deliverer = LocalDeliverer(services)
        self._spawn(deliverer.run, "stratoq-webhooks")
        self._worker_stops.append(deliverer.stop)

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _save_state(self) -> None:
        from stratoq.local import snapshot

        where = self.options.emulator_state
        skipped = snapshot.save(where)
        left_out = f" (left out, as they cannot be saved: {', '.join(skipped)})" if skipped else ""
        print(f"saved the emulator's state to {where}{left_out}", flush=True)

    def stop(self) -> None:
        for stop in self._worker_stops:
            stop()
        for t in self._threads:
            t.join(60)
        for stop in self._stops:
            stop()


def run(options: DevOptions) -> int:
    stack = DevStack(options)
    done = threading.Event()

    on_stop_signals(done.set)
    try:
        facts = stack.start()
        ca = facts.get("ca_bundle")
        ca_line = f"  TLS CA:      {ca}\n" if ca else ""
        cacert = f"--cacert {ca} " if ca else ""
        print(
            "stratoq dev is running (Ctrl-C stops it)\n"
            f"  API:         {facts['api_url']}\n"
            f"  API key:     {facts['api_key']}   (admin; also in {options.state_file})\n"
            f"  console:     {facts['api_url']}/console   (sign in with an API key)\n"
            f"  metrics:     {facts['metrics_url'] or 'off'}\n"
            f"  AWS emulator {facts['aws_endpoint_url']}\n"
            f"{_faults_line(options)}"
            f"{ca_line}"
            f"{_state_line(options, stack.restored)}"
            f"  workers:     {options.workers} poller slots, "
            f"{options.lambda_workers} Lambda-style consumers per queue\n"
            f"try: curl {cacert}-s -H "
            f'\'x-api-key: {facts["api_key"]}\' -d \'{{"name": "echo", '
            f'"payload": {{"hi": 1}}}}\' {facts["api_url"]}/v1/tasks',
            flush=True,
        )
        done.wait()
        print("stopping: letting running tasks finish ...", flush=True)
    finally:
        stack.stop()
    return 0


def _faults_line(options: DevOptions) -> str:
    if not options.faults:
        return ""
    seed = "" if options.faults_seed is None else f" (seed {options.faults_seed})"
    return f"  faults:      {options.faults}{seed}   (docs/reliability.md)\n"


def _state_line(options: DevOptions, restored: bool) -> str:
    if not options.persist:
        return ""
    where = options.emulator_state
    return f"  state:       {'restored from' if restored else 'new; saved at stop to'} {where}\n"
