import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from centralino_proto.db import make_engine, plumbing_metadata
from centralino_proto.testing import delete_bus, fresh_database, test_bus_names


@pytest.fixture
async def bus_db() -> AsyncIterator[str]:
    """A fresh database with the plumbing tables and an `effects` log for handlers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = await fresh_database(f"test_proto_bus{worker}")
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        # Deliberately no unique key: a duplicate effect must be visible.
        await conn.execute(
            text("CREATE TABLE effects (event_id uuid NOT NULL, at timestamptz DEFAULT now())")
        )
    await engine.dispose()
    yield url


@pytest.fixture
async def bus_names() -> AsyncIterator[dict[str, str]]:
    names = test_bus_names()
    yield names
    await delete_bus(names["bus_exchange"], names["bus_queue_prefix"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A RabbitMQ node of the test's own, so restarting it disturbs nobody else."""

    node: str
    amqp_url: str

    def ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            check=True,
            timeout=timeout,
            capture_output=True,
        )

    def wait_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                subprocess.run(
                    ["rabbitmqctl", "-q", "-n", self.node, "await_startup"],
                    capture_output=True,
                    timeout=60,
                ).returncode
                == 0
            ):
                return
            time.sleep(1)
        raise RuntimeError(f"RabbitMQ node {self.node} did not start")

    async def restart(self) -> None:
        await asyncio.to_thread(self.ctl, "stop_app")
        await asyncio.to_thread(self.ctl, "start_app")
        await asyncio.to_thread(self.wait_up)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[Broker]:
    port, dist = _free_port(), _free_port()
    base = tempfile.mkdtemp(prefix="centralino-rabbit-")
    with open(f"{base}/rabbitmq.conf", "w") as f:
        f.write(f"listeners.tcp.local = 127.0.0.1:{port}\n")
    with open(f"{base}/enabled_plugins", "w") as f:
        f.write("[].\n")
    shutil.chown(base, "rabbitmq", "rabbitmq")
    for name in ("rabbitmq.conf", "enabled_plugins"):
        shutil.chown(f"{base}/{name}", "rabbitmq", "rabbitmq")
    node = f"centralino-test-{port}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_MNESIA_BASE": f"{base}/mnesia",
        "RABBITMQ_LOG_BASE": f"{base}/log",
        "RABBITMQ_CONFIG_FILE": f"{base}/rabbitmq.conf",
        "RABBITMQ_ENABLED_PLUGINS_FILE": f"{base}/enabled_plugins",
    }
    subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True, timeout=60)
    broker = Broker(node=node, amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/")
    try:
        broker.wait_up()
        yield broker
    finally:
        subprocess.run(["rabbitmqctl", "-q", "-n", node, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
