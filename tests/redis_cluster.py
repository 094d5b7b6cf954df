"""A real three-master Redis Cluster for the tests, started from the machine's redis-server.

``redis_cluster`` (session fixture, exposed in tests/conftest.py) yields a
``redis.cluster.RedisCluster`` client. Three ``redis-server --cluster-enabled yes``
processes run in a temporary directory and are joined with
``redis-cli --cluster create``; the fixture waits until every slot is served and stops
them at the end of the session.

Ports: ``ESI_TEST_REDIS_CLUSTER_PORT=7100`` uses 7100-7102 (and their cluster bus ports
17100-17102); without it three free ports are picked, so parallel test runs on one
machine never collide. No redis-server/redis-cli: the tests using it are skipped with
the reason, unless ``ESI_TEST_REQUIRE_SERVICES=1`` (CI), where that is a failure.

``cluster_client_factory()`` is what a child process (or a settings module) names in
``ESI_RATE_LIMIT_REDIS_CLIENT`` to reach the same cluster: it reads
``ESI_TEST_REDIS_CLUSTER_URL``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

HOST = "127.0.0.1"
MASTERS = 3
START_TIMEOUT = 60.0


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_ports() -> list[int]:
    base = os.environ.get("ESI_TEST_REDIS_CLUSTER_PORT")
    if base:
        ports = [int(base) + i for i in range(MASTERS)]
        busy = [p for p in ports + [p + 10000 for p in ports] if not _free(p)]
        if busy:
            raise RuntimeError(f"ports {busy} are in use (ESI_TEST_REDIS_CLUSTER_PORT={base})")
        return ports
    ports: list[int] = []
    candidates = random.sample(range(20000, 30000), 400)
    for port in candidates:  # a node needs its port and its bus port (port + 10000) free
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
            if len(ports) == MASTERS:
                return ports
    raise RuntimeError("no free ports for a Redis Cluster")


def _ping(port: int) -> bool:
    with contextlib.suppress(redis.RedisError):
        return bool(
            redis.Redis(host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1).ping()
        )
    return False


def _cluster_ok(port: int) -> bool:
    with contextlib.suppress(redis.RedisError):
        info = redis.Redis(host=HOST, port=port, socket_timeout=1, decode_responses=True).cluster(
            "INFO"
        )
        return info.get("cluster_state") == "ok" and int(info.get("cluster_slots_ok", 0)) == 16384
    return False


def _wait(check, what: str, procs: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"{f.name}: {f.read_text()[-1500:]}" for f in logs.glob("*.log"))
            raise RuntimeError(f"Redis Cluster: {what} failed (dead: {dead})\n{tails}")
        time.sleep(0.1)


@contextlib.contextmanager
def local_cluster() -> Iterator[RedisCluster]:
    """Start a three-master cluster, yield a client, stop it (raises RuntimeError on failure)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        raise FileNotFoundError("redis-server and redis-cli are needed for a local Redis Cluster")
    ports = _pick_ports()
    workdir = Path(tempfile.mkdtemp(prefix="esi-views-redis-cluster-"))
    procs: list[subprocess.Popen] = []
    client = None
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        HOST,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node_dir),
                        "--logfile",
                        str(workdir / f"{port}.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        _wait(lambda: all(_ping(p) for p in ports), "start", procs, workdir)
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"{HOST}:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        _wait(lambda: all(_cluster_ok(p) for p in ports), "joining", procs, workdir)
        client = RedisCluster(host=HOST, port=ports[0], socket_timeout=5, socket_connect_timeout=5)
        assert len(client.get_primaries()) == MASTERS
        os.environ["ESI_TEST_REDIS_CLUSTER_URL"] = f"redis://{HOST}:{ports[0]}"
        yield client
    finally:
        os.environ.pop("ESI_TEST_REDIS_CLUSTER_URL", None)
        if client is not None:
            client.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def cluster_client_factory() -> RedisCluster:
    """For ``ESI_RATE_LIMIT_REDIS_CLIENT`` in child processes: the running test cluster."""
    return RedisCluster.from_url(
        os.environ["ESI_TEST_REDIS_CLUSTER_URL"], socket_timeout=5, socket_connect_timeout=5
    )


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A local three-master Redis Cluster for this session (see the module docstring)."""
    from django.conf import settings

    try:
        cm = local_cluster()
        client = cm.__enter__()
    except FileNotFoundError as exc:
        if settings.REQUIRE_SERVICES:
            pytest.fail(f"ESI_TEST_REQUIRE_SERVICES=1 but: {exc}")
        pytest.skip(f"{exc} (install the redis-server package)")
    try:
        yield client
    finally:
        cm.__exit__(None, None, None)
