"""ESI calls within CCP's limits: our shared budget against django-esi 10's bucket handling.

A FakeESI in its own process floats every bucket at ``--limit`` tokens per ``--window``
seconds. 4 processes x 8 threads call one authenticated group for 50 characters (7
threads per process) and one public group (1 thread per process), offering twice what
the limits allow, for 3 windows. Counted at the fake: 429 and 420 answers, tokens spent
against tokens allowed. Counted in the clients: Redis round trips per reservation.

django-esi 10's side is its own code (``esi.rate_limiting.ESIRateLimits``, as its
OpenAPI client uses it: check the bucket before a call, set it from
``X-Ratelimit-Remaining`` after) around the same HTTP calls, since its client needs
CCP's live OpenAPI document. Tokens are stand-ins holding a JWT of the fake SSO's keys:
the token store is measured in bench/refresh.py.

Deferral (``--only deferral``): 200 Celery tasks under ``rate_limit_retry_task``
(bench/deferral_app.py, ``max_retries=3``), each one public ESI call, run by real
workers against a fake ESI of ``--defer-limit`` tokens per ``--defer-window`` s; the
makespan against the least the limit allows, tasks completed and retries left.

    .venv-bench/bin/python bench/esi_limits.py --output bench/results/esi.md
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder leads sys.path, and this file would hide
# django-esi's package "esi": drop it, keep the project root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCOPE = "esi-wallet.read_character_wallet.v1"
WALLET = "/characters/{character_id}/wallet"
CHARACTERS = [95000001 + i for i in range(50)]
PROCESSES, THREADS = 4, 8


def configure(redis_url: str, esi_url: str, cache: str = "none") -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
            CACHES={
                "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url},
                "none": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
                "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            },
            USE_TZ=True,
            ESI_API_URL=esi_url,
            ESI_RATE_LIMIT_REDIS_URL=redis_url,
            ESI_API_CACHE_ALIAS=cache,
            ESI_MAX_WAIT=0.0,
            ESI_SSO_CLIENT_ID="fake-client-id",
            ESI_USER_CONTACT_EMAIL="bench@example.com",
            ESI_LIMITER_KEY_PREFIX=f"esi_views:bench:{os.getppid()}:",
        )
        import django

        django.setup()


class _Scopes:
    def values_list(self, *args, **kwargs):
        return [SCOPE, "esi-skills.read_skills.v1"]


class BenchToken:
    """What EsiSession reads of a Token: the character, its scopes, an access token."""

    scopes = _Scopes()

    def __init__(self, character_id: int, jwt: str) -> None:
        self.character_id = character_id
        self._jwt = jwt

    def valid_access_token(self) -> str:
        return self._jwt


def mint(character_id: int) -> str:
    from esi_views.testing import FakeEveSSO

    sso = FakeEveSSO(client_id="fake-client-id")
    return sso.mint_access_token(
        character_id,
        [SCOPE, "esi-skills.read_skills.v1"],
        issuer="login.eveonline.com",
        expires_in=3600,
    )


# -- the fake ESI in its own process --------------------------------------------------------


def _serve(conn, limit: int, window: float) -> None:
    from esi_views.testing.fake_esi import FakeESI

    with FakeESI(None, window=window, limit=limit) as esi:
        conn.send(esi.base_url)
        while True:
            command = conn.recv()
            if command == "stop":
                return
            if command == "reset":
                esi.reset()
                conn.send(True)
            elif command == "stats":
                conn.send((dict(esi.calls), dict(esi.spent)))


class FakeEsiProcess:
    def __init__(self, limit: int, window: float) -> None:
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_serve, args=(child, limit, window), daemon=True)
        self.process.start()
        self.base_url = self.conn.recv()

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def stats(self) -> tuple[dict, dict]:
        self.conn.send("stats")
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


# -- the load -------------------------------------------------------------------------------


def _ours_caller():
    from esi_views.esi import EsiLimitError, EsiSession, public

    sessions: dict[int, EsiSession] = {}

    def call(character_id: int | None, jwt: str | None) -> str:
        try:
            if character_id is None:
                public().get("/status")
            else:
                session = sessions.get(character_id)
                if session is None:
                    session = sessions[character_id] = EsiSession(BenchToken(character_id, jwt))
                session.get(WALLET, character_id=character_id)
        except EsiLimitError:
            return "deferred"
        return "sent"

    return call


class _CountingCache:
    """django-esi's cache, counting the Redis commands its bucket handling sends."""

    def __init__(self, cache, counter) -> None:
        self._cache, self._counter = cache, counter

    def __getattr__(self, name):
        attribute = getattr(self._cache, name)
        if callable(attribute) and name in ("get", "set", "ttl", "decr", "delete"):

            def counted(*args, **kwargs):
                self._counter[0] += 1
                return attribute(*args, **kwargs)

            return counted
        return attribute


def _django_esi_caller(esi_url: str, limit: int, window: float, counter):
    import requests
    from django.core.cache import cache
    from esi import rate_limiting
    from esi.exceptions import ESIBucketLimitException, ESIErrorLimitException

    rate_limiting.cache = _CountingCache(cache, counter)
    limits = rate_limiting.ESIRateLimits
    local = threading.local()

    def call(character_id: int | None, jwt: str | None) -> str:
        session = local.__dict__.setdefault("session", requests.Session())
        group = "status" if character_id is None else f"char-wallet:{character_id}"
        bucket = rate_limiting.ESIRateLimitBucket(group, limit, int(window))
        try:
            reset = rate_limiting.cache.get("esi_error_limit_reset")
            if reset is not None:
                raise ESIErrorLimitException(reset=reset)
            limits.check_bucket(bucket)
        except (ESIBucketLimitException, ESIErrorLimitException):
            return "deferred"
        if character_id is None:
            response = session.get(esi_url + "/status", timeout=30)
        else:
            response = session.get(
                f"{esi_url}/characters/{character_id}/wallet",
                timeout=30,
                headers={"Authorization": f"Bearer {jwt}"},
            )
        if "x-ratelimit-remaining" in response.headers:
            limits.set_bucket(bucket, response.headers["x-ratelimit-remaining"])
        return "sent"

    return call


def _worker(lib, index, redis_url, esi_url, limit, window, start, duration, rates, out):
    try:
        _work(lib, index, redis_url, esi_url, limit, window, start, duration, rates, out)
    except BaseException as exc:
        out.put({"error": repr(exc)})
        raise


def _work(lib, index, redis_url, esi_url, limit, window, start, duration, rates, out):
    configure(redis_url, esi_url)
    counter = [0]
    call = _ours_caller() if lib == "ours" else _django_esi_caller(esi_url, limit, window, counter)
    mine = CHARACTERS[index::PROCESSES]
    tokens = {c: mint(c) for c in mine}
    ready, go, start_value = start
    ready.put(index)
    go.wait()
    start_at = start_value.value
    results: dict[str, int] = {}
    lock = threading.Lock()

    def thread(t: int) -> None:
        public_thread = t == THREADS - 1
        chars = [None] if public_thread else mine[t :: THREADS - 1] or mine
        interval = 1.0 / (rates[1] if public_thread else rates[0])
        next_at, n, counts = start_at + t * interval / THREADS, 0, {}
        while True:
            now = time.time()
            if now >= start_at + duration:
                break
            if now < next_at:
                time.sleep(next_at - now)
                continue
            next_at = max(next_at + interval, now - 1.0)  # catch up, but not in a burst
            c = chars[n % len(chars)]
            n += 1
            outcome = call(c, tokens.get(c))
            key = ("public:" if public_thread else "auth:") + outcome
            counts[key] = counts.get(key, 0) + 1
        with lock:
            for key, value in counts.items():
                results[key] = results.get(key, 0) + value

    threads = [threading.Thread(target=thread, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if lib == "ours":
        from esi_views.esi import limiter

        results["round_trips:reserve"] = limiter.round_trips["reserve"]
        results["round_trips:settle"] = limiter.round_trips["settle"]
        results["round_trips:errors"] = limiter.round_trips["errors"]
    else:
        results["round_trips:all"] = counter[0]
    out.put(results)


def run_load(
    lib: str, fake: FakeEsiProcess, redis_url: str, limit: int, window: float, windows: int
) -> dict:
    fake.reset()
    _clear(redis_url)
    duration = windows * window
    allowed_calls = limit / 2 / window  # per bucket and second, at 2 tokens a call
    rates = (
        2 * allowed_calls * len(CHARACTERS) / (PROCESSES * (THREADS - 1)),
        2 * allowed_calls / PROCESSES,
    )
    out: mp.Queue = mp.Queue()
    ready, go, start_value = mp.Queue(), mp.Event(), mp.Value("d", 0.0)
    procs = [
        mp.Process(
            target=_worker,
            args=(
                lib,
                i,
                redis_url,
                fake.base_url,
                limit,
                window,
                (ready, go, start_value),
                duration,
                rates,
                out,
            ),
        )
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every worker set up (imports, Django, tokens) before the clock starts
        ready.get(timeout=120)
    start_value.value = time.time() + 0.5
    go.set()
    totals: dict[str, int] = {}
    for _ in procs:
        result = out.get(timeout=duration + 120)
        if "error" in result:
            raise RuntimeError(f"a {lib} worker failed: {result['error']}")
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
    for p in procs:
        p.join(30)
    calls, spent = fake.stats()
    auth_allowed = limit * windows * len(CHARACTERS)
    public_allowed = limit * windows
    reserved = totals.get("round_trips:reserve", 0)
    attempts = sum(v for k, v in totals.items() if not k.startswith("round_trips"))
    return {
        "lib": lib,
        "offered": attempts,
        "sent": totals.get("auth:sent", 0) + totals.get("public:sent", 0),
        "deferred": totals.get("auth:deferred", 0) + totals.get("public:deferred", 0),
        "429": calls.get("status:429", 0),
        "420": calls.get("status:420", 0),
        "auth_share": spent.get("char-wallet", 0) / auth_allowed,
        "public_share": spent.get("status", 0) / public_allowed,
        "reserve_per_attempt": reserved / attempts if lib == "ours" and attempts else None,
        "trips_per_attempt": (
            sum(v for k, v in totals.items() if k.startswith("round_trips")) / attempts
            if attempts
            else 0
        ),
    }


def _clear(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in ("esi_views:bench:*", "*esi:bucket:*", "*esi_error_limit_reset*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


def run_etag(fake: FakeEsiProcess, redis_url: str, calls: int = 200) -> dict:
    """Tokens per call on unchanged data, with and without the ETag cache (one process)."""
    from django.test import override_settings

    from esi_views.esi import EsiSession, groups

    configure(redis_url, fake.base_url)
    result = {}
    for alias in ("none", "local"):
        fake.reset()
        _clear(redis_url)
        groups.forget()
        with override_settings(ESI_API_CACHE_ALIAS=alias, ESI_MAX_WAIT=60.0):
            session = EsiSession(BenchToken(CHARACTERS[0], mint(CHARACTERS[0])))
            for _ in range(calls):
                session.get("/characters/{character_id}/skills", character_id=CHARACTERS[0])
        fake_calls, spent = fake.stats()
        result[alias] = (spent.get("char-skill", 0) / calls, fake_calls.get("status:304", 0))
    return result


# -- 200 tasks deferred by rate_limit_retry_task ---------------------------------------------

DEFER_TASKS, DEFER_WORKERS, DEFER_THREADS = 200, 2, 8


def run_deferral(redis_url: str, limit: int, window: float) -> dict:
    """Real Celery workers run DEFER_TASKS one-call tasks against one floating bucket."""
    import redis

    fake = FakeEsiProcess(limit, window)
    prefix = f"esi_views:benchdefer:{os.getpid()}"
    load = os.getloadavg()[0]
    records = redis.Redis.from_url(redis_url)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        BENCH_DEFER_REDIS=redis_url,
        BENCH_DEFER_ESI=fake.base_url,
        BENCH_DEFER_PREFIX=prefix,
        PYTHONPATH=str(ROOT),
    )
    # The parent only queues tasks, by name: its Django (if run_etag set it up) is not the
    # workers' (bench/deferral_app.py), which needs esi_views installed.
    from celery import Celery

    queue = f"{prefix}:queue"
    sender = Celery("esi_views_bench_deferral", broker=redis_url)
    sender.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        broker_transport_options={"global_keyprefix": f"{prefix}:kombu:"},
    )

    def queue_call(n: int) -> None:
        sender.send_task("bench.deferral.call", args=(n,), queue=queue)

    log = open(f"/tmp/esi-bench-deferral-{os.getpid()}.log", "w+")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.deferral_app",
                "worker",
                "-P",
                "threads",
                "-c",
                str(DEFER_THREADS),
                "-Q",
                queue,
                "-n",
                f"d{i}-{os.getpid()}@%h",
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
        for i in range(DEFER_WORKERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while records.scard(f"{prefix}:ready") < DEFER_WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                log.seek(0)
                raise RuntimeError(f"Celery workers did not start:\n{log.read()[-4000:]}")
            time.sleep(0.1)
        # One call first teaches the workers the route's group (shared through the cache),
        # then one window passes so the run starts on a full bucket at the fake and ours.
        queue_call(-1)
        _wait_for(records, f"{prefix}:done", 1, 60)
        time.sleep(window + 0.5)
        fake.reset()
        records.delete(f"{prefix}:done", f"{prefix}:deferrals", f"{prefix}:failed")
        started = time.time()
        for n in range(DEFER_TASKS):
            queue_call(n)
        ideal = (math.ceil(DEFER_TASKS * 2 / limit) - 1) * window
        _wait_for(records, f"{prefix}:done", DEFER_TASKS, ideal * 2 + 60, failed=f"{prefix}:failed")
        time.sleep(1.0)  # a task run twice would show up here
        done = [json.loads(r) for r in records.lrange(f"{prefix}:done", 0, -1)]
        calls, _spent = fake.stats()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        fake.stop()
        failed = [r.decode() for r in records.lrange(f"{prefix}:failed", 0, -1)]
        deferrals = int(records.get(f"{prefix}:deferrals") or 0)
        for key in records.scan_iter(match=f"*{prefix}*", count=1000):
            records.delete(key)
        log.close()
    cap = limit - max(2, math.ceil(limit * 0.05))  # ESI_HEADROOM, ESI_MIN_HEADROOM defaults
    makespan = max(d["t"] for d in done) - started
    return {
        "limit": limit,
        "window": window,
        "tasks": DEFER_TASKS,
        "load": load,
        "completed": len({d["n"] for d in done}),
        "runs": len(done),
        "failed": len(failed),
        "failures": failed[:3],
        "max_retries_used": max((d["retries"] for d in done), default=0),
        "deferrals": deferrals,
        "makespan": makespan,
        "ideal": ideal,
        "ideal_headroom": (math.ceil(DEFER_TASKS * 2 / cap) - 1) * window,
        "sent": sum(v for k, v in calls.items() if k.startswith("status:")),
        "429": calls.get("status:429", 0),
        "420": calls.get("status:420", 0),
    }


def _wait_for(records, key: str, count: int, timeout: float, failed: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while records.llen(key) < count:
        if failed and records.llen(failed):
            break  # a task failed for good: it will never complete
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)


def render_deferral(d: dict) -> str:
    over = d["makespan"] / d["ideal"] - 1
    over_headroom = d["makespan"] / d["ideal_headroom"] - 1
    return "\n".join(
        [
            "<!-- deferral -->",
            "## 200 tasks deferred by `rate_limit_retry_task`",
            "",
            f"{d['tasks']} Celery tasks (`@rate_limit_retry_task`, `max_retries=3`), each one "
            f"public ESI call, run by {DEFER_WORKERS} real workers x {DEFER_THREADS} threads "
            f"(Redis broker) against a fake ESI bucket of {d['limit']} tokens per "
            f"{d['window']:g} s (floating window, 2 tokens a call). All tasks are queued at "
            "once; a task the limiter refuses is retried when the bucket frees. Ideal makespan: "
            f"the last of the {d['tasks']} calls cannot start before "
            f"(ceil({d['tasks']} x 2 / {d['limit']}) - 1) x {d['window']:g} s = {d['ideal']:g} s; "
            f"with the default headroom (5%, at least 2 tokens kept free) "
            f"{d['ideal_headroom']:g} s.",
            "",
            "| Tasks completed | Failed | Highest `request.retries` at completion | Deferrals "
            "(retries) | Calls at the fake | 429 | 420 | Makespan | Over ideal | Over ideal with "
            "headroom |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {d['completed']} / {d['tasks']} | {d['failed']} | {d['max_retries_used']} | "
            f"{d['deferrals']} | {d['sent']} | {d['429']} | {d['420']} | {d['makespan']:.1f} s | "
            f"{over:+.1%} | {over_headroom:+.1%} |",
            "",
            f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"load average {d['load']:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
            "<!-- /deferral -->",
        ]
    )


def merge_deferral(existing: str, section: str) -> str:
    """Put the deferral section into an existing results file, keeping its other figures."""
    block = re.compile(r"<!-- deferral -->.*?<!-- /deferral -->", re.S)
    if block.search(existing):
        return block.sub(lambda _m: section, existing)
    return existing.rstrip("\n") + "\n\n" + section + "\n"


def render(args, rows, etag) -> str:
    lines = [
        "# ESI calls within CCP's limits",
        "",
        f"Fake ESI: every bucket {args.limit} tokens per {args.window:g} s (floating window); "
        f"{PROCESSES} processes x {THREADS} threads; {len(CHARACTERS)} characters on one "
        "authenticated group (7 threads per process) plus one public group (1 thread per "
        f"process), offered twice what the limits allow, for {args.windows} windows. "
        "Calls the limiter refuses are deferred (`ESI_MAX_WAIT = 0`), as in a task under "
        "`rate_limit_retry_task`.",
        "",
        "| Library | Calls offered | Sent | Deferred locally | 429 | 420 | Allowed tokens spent "
        "(authenticated / public) | Redis round trips to reserve, per call | All Redis round "
        "trips per call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reserve = (
            f"{r['reserve_per_attempt']:.2f}"
            if r["reserve_per_attempt"] is not None
            else "n/a (checks, then overwrites)"
        )
        lines.append(
            f"| {'django-esi-views' if r['lib'] == 'ours' else 'django-esi 10'} | {r['offered']} "
            f"| {r['sent']} | {r['deferred']} | {r['429']} | {r['420']} | "
            f"{r['auth_share']:.0%} / {r['public_share']:.0%} | {reserve} | "
            f"{r['trips_per_attempt']:.2f} |"
        )
    if etag:
        lines += [
            "",
            "## ETag reuse on unchanged data",
            "",
            "One character calls a route whose data never changes (ETag, no Expires) 200 times.",
            "",
            "| Answer cache | Tokens spent per call | 304 answers |",
            "|---|---|---|",
            f"| none (`DummyCache`) | {etag['none'][0]:.2f} | {etag['none'][1]} |",
            f"| Django cache (`LocMemCache`) | {etag['local'][0]:.2f} | {etag['local'][1]} |",
        ]
    lines += [
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--only", choices=["ours", "django-esi", "deferral"], default=None)
    parser.add_argument("--defer-limit", type=int, default=30)
    parser.add_argument("--defer-window", type=float, default=5.0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    mp.set_start_method("fork")
    from esi_views.testing._fake_tokens import shared_keys

    shared_keys()  # made once here: the fake ESI and the workers fork with the same keys
    if args.only == "deferral":
        section = render_deferral(run_deferral(args.redis, args.defer_limit, args.defer_window))
        if args.output:
            path = Path(args.output)
            path.write_text(merge_deferral(path.read_text() if path.exists() else "", section))
        print(section)
        return 0
    fake = FakeEsiProcess(args.limit, args.window)
    try:
        rows = []
        for lib in ("ours", "django-esi"):
            if args.only in (None, lib):
                rows.append(run_load(lib, fake, args.redis, args.limit, args.window, args.windows))
                print(rows[-1], flush=True)
        etag = run_etag(fake, args.redis) if args.only in (None, "ours") else None
    finally:
        fake.stop()
    markdown = render(args, rows, etag)
    if args.only is None:
        deferral = run_deferral(args.redis, args.defer_limit, args.defer_window)
        markdown = merge_deferral(markdown, render_deferral(deferral))
    if args.output:
        Path(args.output).write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
