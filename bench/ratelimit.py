"""rate_limited_task's limiter vs django-esi 10's and the ``limits`` library's moving window.

Run by ``make bench`` in .venv-bench (django-esi 10 from PyPI, ``limits``, and this
package). All three talk to the same Redis (``BENCH_REDIS_URL``, a dedicated DB) in the
same run. Writes markdown to bench/results/ratelimit.md.

(a) hammer: 4 processes call one bucket's check as fast as they can for 5 s.
(b) burst: 100 simulated tasks arrive at once at 20/s; a refused task sleeps for the
    countdown it was given (as ``task.retry(countdown=...)`` would) and counts a retry.
    Simulated rather than real Celery: django-esi's limiter is used exactly as its
    decorator uses it, without a broker's ETA jitter.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import multiprocessing as mp
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
RUN = uuid.uuid4().hex[:8]
PREFIX = f"bench-{RUN}"
LIBS = ("esi-views", "django-esi-10", "limits-moving-window")


def setup_django() -> None:
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "esi_views"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={
            # django-esi needs django-redis (cache.ttl, cache.lock).
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": PREFIX,
            }
        },
        ESI_RATE_LIMIT_REDIS_URL=REDIS_URL,
        ESI_RATE_LIMIT_KEY_PREFIX=f"{PREFIX}:",
        USE_TZ=True,
    )
    import django

    django.setup()


def make_check(lib: str, rate: str, bucket: str):
    """A ``check(token) -> seconds to wait (0.0 = admitted)`` for each limiter."""
    setup_django()
    if lib == "esi-views":
        import redis

        from esi_views.ratelimit import acquire, parse_rate

        client, parsed = redis.Redis.from_url(REDIS_URL), parse_rate(rate)
        key = f"{PREFIX}:{bucket}"
        return lambda token: acquire(client, key, token, parsed)
    if lib == "django-esi-10":
        from esi.exceptions import TaskBucketLimitException
        from esi.rate_limiting import TaskRateLimitBucket, TaskRateLimits

        def check(token):
            # What esi.decorators.rate_limited_task does per call.
            try:
                TaskRateLimits.check_bucket(TaskRateLimitBucket.from_rate(bucket, rate))
            except TaskBucketLimitException as exc:
                return float(exc.reset)
            return 0.0

        return check
    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter

    count, window = rate.split("/")
    units = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
    amount = window[:-1] or "1"
    limiter = MovingWindowRateLimiter(RedisStorage(REDIS_URL))
    item = parse(f"{count} per {amount} {units[window[-1]]}")

    def check(token):
        if limiter.hit(item, PREFIX, bucket):
            return 0.0
        return max(limiter.get_window_stats(item, PREFIX, bucket).reset_time - time.time(), 0.001)

    return check


def interval(rate: str) -> float:
    count, window = rate.split("/")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[window[-1]]
    return int(window[:-1] or 1) * unit / int(count)


# -- (a) hammer ----------------------------------------------------------------------------


def hammer(lib, rate, bucket, start_at, duration, out):
    check = make_check(lib, rate, bucket)
    exact = None
    if lib == "esi-views":
        # Our script records each admission's Redis time in "~last"; nobody else can be
        # admitted within one spacing, so reading it right away gives the exact time.
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        exact = lambda: client.zscore(f"{PREFIX}:{bucket}", "~last") / 1e6  # noqa: E731
    # Load scripts and open connections on another bucket: a warm-up check on this one
    # would take (or, for us, reserve) a slot before the start.
    make_check(lib, rate, bucket + "-warm-up")(uuid.uuid4().hex)
    admitted, server_times, checks, token = [], [], 0, uuid.uuid4().hex
    time.sleep(max(0.0, start_at - time.time()))
    end = start_at + duration
    while (before := time.time()) < end:
        wait = check(token)
        checks += 1
        if wait == 0.0:
            admitted.append((before, time.time()))
            if exact:
                server_times.append(exact())
            token = uuid.uuid4().hex
    out.put((admitted, checks, server_times))


def commandstats(client) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): v["calls"] for name, v in client.info("commandstats").items()
    }


def spacing(admissions, gap):
    """(smallest gap between midpoints, definite violations) of (before, after) pairs.

    A violation is definite when even the most generous reading, the later admission
    at its latest and the earlier at its earliest, is closer than the interval.
    """
    admissions = sorted(admissions)
    mids = sorted((a + b) / 2 for a, b in admissions)
    smallest = min((b - a for a, b in itertools.pairwise(mids)), default=None)
    violations = sum(1 for (b0, _), (_, a1) in itertools.pairwise(admissions) if a1 - b0 < gap)
    return smallest, violations


def run_hammer(lib, rate, client, processes=4, duration=5.0):
    # Warm-up admissions happen before the start; count from a fresh bucket per lib.
    bucket = f"hammer-{lib}-{rate.replace('/', '-')}"
    out = mp.Queue()
    start_at = time.time() + 2.0
    procs = [
        mp.Process(target=hammer, args=(lib, rate, bucket, start_at, duration, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(max(0.0, start_at - time.time()))
    before = commandstats(client)
    results = [out.get() for _ in procs]
    after = commandstats(client)
    for proc in procs:
        proc.join()
    admissions = [a for adm, _, _ in results for a in adm]
    checks = sum(c for _, c, _ in results)
    server = sorted({t for _, _, times in results for t in times})
    server_gap = min((b - a for a, b in itertools.pairwise(server)), default=None)
    gap = interval(rate)
    smallest, violations = spacing(admissions, gap)
    commands = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # Warm-up checks, the runner's own INFO calls and other tenants are not ours.
    commands.pop("info", None)
    allowed = int(duration / gap) + 1
    return {
        "admitted": len(admissions),
        "allowed": allowed,
        "smallest_gap": smallest,
        "server_gap": server_gap,
        "violations": violations,
        "checks_per_s": checks / duration,
        "commands_per_check": sum(commands.values()) / max(checks, 1),
        "top_commands": sorted(commands.items(), key=lambda kv: -kv[1])[:4],
    }


# -- (b) burst ------------------------------------------------------------------------------


def run_burst(lib, rate="20/s", tasks=100, max_sleep=0.25):
    bucket = f"burst-{lib}-{uuid.uuid4().hex[:6]}"
    check = make_check(lib, rate, bucket)
    check("warm-up")  # takes the first slot; the burst starts after it
    time.sleep(interval(rate) * 2)
    starts, retries, lock = [], 0, threading.Lock()
    begin = time.time()

    def task():
        nonlocal retries
        token = uuid.uuid4().hex
        while True:
            before = time.time()
            wait = check(token)
            if wait == 0.0:
                with lock:
                    starts.append((before, time.time()))
                return
            # Ours sleeps through short waits in the worker; longer ones are retries.
            if not (lib == "esi-views" and wait <= max_sleep):
                with lock:
                    retries += 1
            time.sleep(wait)

    threads = [threading.Thread(target=task) for _ in range(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    smallest, violations = spacing(starts, interval(rate))
    return {
        "retries": retries,
        "makespan": max(b for _, b in starts) - begin,
        "violations": violations,
        "smallest_gap": smallest,
    }


def fmt_gap(value):
    return "-" if value is None else f"{value * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default="bench/results/ratelimit.md")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup_django()
    from importlib.metadata import version

    import django
    import limits
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    lines = [
        "# rate_limited_task: benchmark",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Redis {client.info('server')['redis_version']} ({REDIS_URL}), Django "
        f"{django.get_version()}, django-esi {version('django-esi')}, limits {limits.__version__}.",
        "Produced by `make bench` (bench/ratelimit.py); all limiters in the same run.",
        "",
        f"## (a) 4 processes hammering one bucket for {args.duration:g} s",
        "",
        "A process re-checks as fast as it can; when admitted it starts over as a new task. "
        "*Allowed* is what the spacing `window / N` permits (`duration / spacing + 1`). "
        "*Violations* are pairs of consecutive admissions closer than the spacing even "
        "when timed most generously. *Smallest gap* is between the midpoints of the "
        "client-side calls (so it carries a millisecond of client timing jitter); "
        "*exact smallest gap* uses the admission times our script recorded in Redis "
        "(not available for the others). Commands per check come from `INFO commandstats` "
        "(including commands run inside Lua scripts); each of our checks is one round trip "
        "(one EVALSHA).",
        "",
        "| limiter | rate | admitted / allowed | smallest gap (spacing) | exact smallest gap "
        "| violations | checks/s | Redis commands per check (top) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    speed = {}
    for rate in ("10/s", "1/s", "100/m"):
        for lib in LIBS:
            r = run_hammer(lib, rate, client, duration=args.duration)
            speed.setdefault(lib, []).append(r["checks_per_s"])
            top = ", ".join(
                f"{k} {v / max(r['checks_per_s'] * args.duration, 1):.1f}"
                for k, v in r["top_commands"]
            )
            lines.append(
                f"| {lib} | {rate} | {r['admitted']} / {r['allowed']} | "
                f"{fmt_gap(r['smallest_gap'])} ({interval(rate) * 1000:.0f} ms) | "
                f"{fmt_gap(r['server_gap']) if r['server_gap'] is not None else 'n/a'} | "
                f"{r['violations']} | {r['checks_per_s']:,.0f} | "
                f"{r['commands_per_check']:.1f} ({top}) |"
            )
            print(lines[-1], flush=True)
    ratio = statistics.median(speed["esi-views"]) / statistics.median(speed["django-esi-10"])
    lines += [
        "",
        f"Checks per second, median over the three rates: esi-views "
        f"{statistics.median(speed['esi-views']):,.0f}, django-esi 10 "
        f"{statistics.median(speed['django-esi-10']):,.0f} (**{ratio:.1f}x**), limits "
        f"{statistics.median(speed['limits-moving-window']):,.0f}.",
        "",
        "`limits`' moving window counts N hits per window: it admits bursts of N (gaps "
        "near 0) by design, so its gaps are not a spacing failure of that library, only "
        "a different contract from `rate_limited_task`'s spacing.",
        "",
        f"## (b) a burst of 100 tasks at 20/s (median of {args.repeats} runs)",
        "",
        "Simulated tasks (threads) arrive together; a refused task sleeps for the "
        "countdown the limiter gave and counts one retry (ours: waits up to "
        "`ESI_RATE_LIMIT_MAX_SLEEP` = 0.25 s are slept in the worker, not retried, as the "
        "decorator does). Not real Celery: no broker ETA jitter. Ideal makespan: 99 x 50 ms "
        "= 4.95 s. *Smallest gap* is between midpoints of client-side calls made by 100 "
        "threads in one process, so it carries their scheduling jitter; *violations* "
        "count only definite ones (see (a)). *Allowed* in (a) is an upper bound: a start "
        "exactly at the end of the run is not counted.",
        "",
        "| limiter | retries | makespan | spacing violations | smallest gap |",
        "|---|---|---|---|---|",
    ]
    for lib in LIBS:
        runs = [run_burst(lib) for _ in range(args.repeats)]
        lines.append(
            f"| {lib} | {statistics.median(r['retries'] for r in runs):.0f} | "
            f"{statistics.median(r['makespan'] for r in runs):.2f} s | "
            f"{statistics.median(r['violations'] for r in runs):.0f} | "
            f"{fmt_gap(min(r['smallest_gap'] for r in runs))} |"
        )
        print(lines[-1], flush=True)
    for key in client.scan_iter(match=f"*{PREFIX}*"):
        client.delete(key)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
