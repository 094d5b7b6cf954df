"""Real Celery workers (two processes, Redis broker, not eager) against the limiter.

CI (ESI_TEST_REDIS_URL) uses the real Redis: broker, limiter and records all on the test
DB, every key under one prefix per run (deleted afterwards). Without it, a fakeredis TCP
server (with Lua) stands in; if that is impossible, a local ``redis-server`` binary;
failing both, the test is skipped with the reason, or fails under
ESI_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from esi_views.ratelimit import parse_rate
from tests.ratelimit.recording import admitted, gaps_us

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
TIMEOUT = 40.0


def _lua_works(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return client.register_script("return redis.call('TIME')[1]")() is not None
    finally:
        client.close()


@contextlib.contextmanager
def _fakeredis_server():
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address
        yield f"redis://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _redis_server_binary():
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("no redis-server binary")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}"
        for _ in range(50):
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis.from_url(url).ping():
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def redis_urls():
    """(broker URL, limiter URL)."""
    if settings.REDIS_URL:
        yield settings.REDIS_URL, settings.REDIS_URL
        return
    reasons = []
    for name, factory in (
        ("fakeredis TcpFakeServer", _fakeredis_server),
        ("redis-server binary", _redis_server_binary),
    ):
        try:
            with factory() as base:
                if not _lua_works(base + "/0"):
                    raise RuntimeError("no Lua/EVALSHA support")
                print(f"\nrate limit integration test: using {name} at {base}")
                yield base + "/1", base + "/2"
                return
        except Exception as exc:  # try the next way to get a Redis
            reasons.append(f"{name}: {exc}")
    message = "No Redis with Lua for the Celery integration test: " + "; ".join(reasons)
    if settings.REQUIRE_SERVICES:
        pytest.fail(message)
    print("\n" + message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def workers(redis_urls):
    broker_url, limiter_url = redis_urls
    prefix = f"esi-rl-it-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        ESI_RL_BROKER_URL=broker_url,
        ESI_RL_REDIS_URL=limiter_url,
        ESI_RL_PREFIX=prefix,
        ESI_RL_MAX_COUNTDOWN="4",
        PYTHONPATH=str(ROOT),
    )
    for name in ("ESI_RL_BROKER_URL", "ESI_RL_REDIS_URL", "ESI_RL_PREFIX"):
        os.environ[name] = env[name]
    from tests.ratelimit import celery_app

    queue = f"{prefix}-queue"
    celery_app.app.conf.update(
        broker_url=broker_url,
        task_default_queue=queue,
        broker_transport_options={"global_keyprefix": f"{prefix}:kombu:"},
    )
    records = redis.Redis.from_url(limiter_url)
    log = tempfile.NamedTemporaryFile("w+", prefix="esi-rl-workers-", suffix=".log")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.ratelimit.celery_app",
                "worker",
                "-P",
                "threads",
                "-c",
                "4",
                "-Q",
                queue,
                "-n",
                f"w{i}-{prefix}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 30
        while records.scard(f"{prefix}:ready") < WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                log.seek(0)
                pytest.fail(f"Celery workers did not start:\n{log.read()[-4000:]}")
            time.sleep(0.1)
        yield celery_app, records, prefix, queue
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        for url in (limiter_url, broker_url):
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"*{prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
        records.close()


def runs(records, prefix, kind):
    return sorted(
        (json.loads(raw) for raw in records.lrange(f"{prefix}:runs:{kind}", 0, -1)),
        key=lambda run: run["t"],
    )


def gaps(entries):
    """Gaps between task bodies' clocks: only for waits far longer than scheduling noise."""
    return [b["t"] - a["t"] for a, b in itertools.pairwise(entries)]


def test_real_workers_keep_the_spacing_fairly(workers):
    """Spacing is checked on the limiter's own admission times (Redis TIME, exact).

    The task bodies' clocks would add however long a loaded machine takes between the
    admission and the body, so no tolerance is needed or used: every gap must be at
    least the interval, to the microsecond.
    """
    celery_app, records, prefix, queue = workers
    started = time.monotonic()
    for n in range(20):
        celery_app.spaced.apply_async((n,), queue=queue)
    for n in range(4):
        celery_app.strict.apply_async((n,), queue=queue)
    for _ in range(3):
        celery_app.per_corp.apply_async((1, 100), queue=queue)  # corp by position
        celery_app.per_corp.apply_async(kwargs={"corp_id": 2}, queue=queue)  # by keyword
    expected = {"spaced": 20, "strict": 4, "corp1": 3, "corp2": 3}
    while any(records.llen(f"{prefix}:runs:{k}") < n for k, n in expected.items()):
        assert time.monotonic() - started < TIMEOUT, {
            k: records.llen(f"{prefix}:runs:{k}") for k in expected
        }
        time.sleep(0.1)
    time.sleep(0.5)  # nothing runs twice
    retries = {k.decode(): int(v) for k, v in records.hgetall(f"{prefix}:retries").items()}
    bucket = f"{prefix}:bucket:"

    spaced = runs(records, prefix, "spaced")
    assert sorted(r["n"] for r in spaced) == list(range(20))
    spaced_admitted = admitted(records, f"{bucket}rl.spaced")
    assert len(spaced_admitted) == 20
    assert min(gaps_us(spaced_admitted)) >= parse_rate("5/s").interval_us
    spaced_retries = sum(retries.get(r["id"], 0) for r in spaced)
    assert spaced_retries <= 2 * 20

    strict = runs(records, prefix, "strict")
    assert sorted(r["n"] for r in strict) == list(range(4))
    assert all(r["retries"] == 0 for r in strict)  # throttling used none of max_retries=0
    assert max(retries.get(r["id"], 0) for r in strict) >= 2  # one was throttled several times
    strict_admitted = admitted(records, f"{bucket}rl.strict")
    assert len(strict_admitted) == 4
    assert min(gaps_us(strict_admitted)) >= parse_rate("1/3s").interval_us

    # One bucket per corp (by position or keyword alike), each spaced on its own.
    corp1 = admitted(records, f'{bucket}rl.per_corp:{{"corp_id":1}}')
    corp2 = admitted(records, f'{bucket}rl.per_corp:{{"corp_id":2}}')
    assert len(corp1) == len(corp2) == 3
    interval = parse_rate("2/s").interval_us
    assert min(gaps_us(corp1)) >= interval and min(gaps_us(corp2)) >= interval
    assert {r["character_id"] for r in runs(records, prefix, "corp1")} == {100}
    print(
        f"\nthrottling retries: spaced {spaced_retries}; strict "
        f"{[retries.get(r['id'], 0) for r in strict]}; spaced makespan "
        f"{(spaced_admitted[-1] - spaced_admitted[0]) / 1e6:.2f} s"
    )


# -- rate_limit_retry_task with real workers ---------------------------------------------------


def _wait_for_runs(records, prefix, kind, count, timeout=TIMEOUT):
    started = time.monotonic()
    while records.llen(f"{prefix}:runs:{kind}") < count:
        assert time.monotonic() - started < timeout, runs(records, prefix, kind)
        time.sleep(0.1)
    time.sleep(0.5)  # nothing runs again
    return runs(records, prefix, kind)


def test_limit_errors_defer_the_task_past_the_reset_without_using_retries(workers):
    celery_app, records, prefix, queue = workers
    celery_app.deferred.apply_async(("rate", 2, 1.0), queue=queue)
    celery_app.deferred.apply_async(("errors", 1, 1.5, True), queue=queue)
    rate = _wait_for_runs(records, prefix, "rate", 3)
    errors = _wait_for_runs(records, prefix, "errors", 2)
    assert len(rate) == 3 and len(errors) == 2  # limited twice / once, then done
    assert all(r["deferring"] for r in rate + errors)  # the body ran inside deferring()
    assert all(r["retries"] == 0 for r in rate + errors)  # max_retries=0 never used up
    assert min(gaps(rate)) >= 1.0 and gaps(errors)[0] >= 1.5  # not before the reset
    retries = {k.decode(): int(v) for k, v in records.hgetall(f"{prefix}:retries").items()}
    assert retries[rate[0]["id"]] == 2 and retries[errors[0]["id"]] == 1


def test_a_wait_beyond_the_countdown_cap_is_split_without_running_the_body(workers):
    # The workers cap countdowns at 4 s (ESI_RL_MAX_COUNTDOWN); a 6 s reset takes two
    # trips through the broker, and the body runs only after the whole wait.
    celery_app, records, prefix, queue = workers
    celery_app.deferred.apply_async(("long", 1, 6.0), queue=queue)
    long = _wait_for_runs(records, prefix, "long", 2)
    assert len(long) == 2
    assert gaps(long)[0] >= 6.0
    retries = {k.decode(): int(v) for k, v in records.hgetall(f"{prefix}:retries").items()}
    assert retries[long[0]["id"]] == 2  # 4 s, then the rest
    assert long[1]["retries"] == 0


def test_other_errors_pass_through_untouched(workers):
    celery_app, records, prefix, queue = workers
    celery_app.failing.apply_async(("failing",), queue=queue)
    failed = _wait_for_runs(records, prefix, "failing", 1)
    time.sleep(1.0)
    assert len(runs(records, prefix, "failing")) == 1
    retries = {k.decode(): int(v) for k, v in records.hgetall(f"{prefix}:retries").items()}
    assert failed[0]["id"] not in retries
