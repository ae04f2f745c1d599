"""A real RabbitMQ server (Debian's rabbitmq-server) for one test module.

It runs as a child process with everything of its own: a temporary data and log
directory, a unique node name, free ports on 127.0.0.1 (AMQP, Erlang distribution) and
its own epmd on a free port, so it neither needs nor touches a system RabbitMQ.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.support.procs import wait_for

# The script itself: /usr/sbin/rabbitmq-server is a wrapper that switches to the
# `rabbitmq` user and its /var/lib/rabbitmq, which a private test node must not use.
SERVER_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)


def server_binary() -> str | None:
    for path in SERVER_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("rabbitmq-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rabbit:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @contextmanager
    def channel(self) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            ch.confirm_delivery()  # publishes return once the broker has them
            yield ch
        finally:
            conn.close()

    def declare(self, queue: str) -> None:
        with self.channel() as ch:
            ch.queue_declare(queue, durable=True)

    def publish(self, queue: str, body: bytes, message_id: str | None = None) -> None:
        props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
        with self.channel() as ch:
            ch.basic_publish("", queue, body, props, mandatory=True)

    def ready(self, queue: str) -> int:
        """Messages waiting in the queue (not delivered, or delivered and handed back)."""
        with self.channel() as ch:
            return int(ch.queue_declare(queue, passive=True).method.message_count)


@contextmanager
def rabbitmq_server(tmp: Path, timeout: float = 90.0) -> Iterator[Rabbit]:
    binary = server_binary()
    epmd = shutil.which("epmd")
    if binary is None or epmd is None:
        pytest.skip(
            "rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server; "
            ".ci/run installs it)"
        )
    assert binary is not None and epmd is not None
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    for name in ("home", "mnesia", "log", "plugins-expand"):
        (tmp / name).mkdir()
    (tmp / "enabled_plugins").write_text("[].\n")
    (tmp / "rabbitmq-env.conf").write_text("")
    (tmp / "rabbitmq.conf").write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),  # the Erlang cookie goes here
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": f"stratoq-test-{uuid.uuid4().hex[:8]}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_PID_FILE": str(tmp / "rabbitmq.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(tmp / "plugins-expand"),
        "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(tmp / "advanced.config"),
        # Distribution on loopback only, through our own epmd.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
    }
    log = tmp / "rabbitmq.log"
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("wb") as out:
        # Our own epmd in the foreground: it goes away with the test, unlike the daemon
        # an Erlang node would start (and leave running) on the shared port 4369.
        procs.append(
            subprocess.Popen(
                [epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        procs.append(
            subprocess.Popen(
                [binary],
                env=env,
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    rabbit = Rabbit(port, log)
    server = procs[1]

    def accepting() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"rabbitmq-server exited {server.returncode}:\n{log.read_text()}")
        try:
            pika.BlockingConnection(pika.URLParameters(rabbit.url)).close()
        except pika.exceptions.AMQPConnectionError:
            return False
        return True

    try:
        wait_for(accepting, timeout, "rabbitmq-server to accept AMQP connections", every=0.25)
        yield rabbit
    finally:
        for proc in reversed(procs):  # the server first, then its epmd
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
