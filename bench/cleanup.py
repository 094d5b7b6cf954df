"""Benchmark: token refresh throughput vs django-esi 10, and cleanup over a million rows.

    .venv-bench/bin/python bench/cleanup.py [--rows 1000000] [--refresh 1000] [--repeat 3]

Needs .venv-bench (django-esi 10 from PyPI + this package editable + dj-database-url)
and PostgreSQL (ESI_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/esi_bench,
created if missing). Writes bench/results/cleanup.md.

(a) 1,000 expired tokens refreshed against a FakeEveSSO with 20 ms latency: ours
    (``cleanup_token()`` and ``Token.objects.all().bulk_refresh()``) vs django-esi's
    ``Token.objects.all().bulk_refresh()`` (every token is expired); median of ``--repeat``.
(b) ``cleanup_token()`` (and one ``cleanup_token_subset(48)`` run) over ``--rows`` token
    rows, about 1% expired, in a fresh child process: wall time, peak RSS
    (``ru_maxrss``), number of SQL queries.

django-esi is pointed at the fake SSO by patching ``esi.app_settings.ESI_TOKEN_URL`` and
``ESI_TOKEN_JWK_SET_URL`` (module constants: the JWKS URL has no setting), and the fake
mints tokens with EVE's real issuer, which django-esi hard-codes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import common  # noqa: E402  (needs ROOT on sys.path)

RESULTS = ROOT / "bench" / "results" / "cleanup.md"
LATENCY = 0.02


# -- (a) refresh throughput ------------------------------------------------------------------


def _ours_expired(seed, count: int) -> None:
    from esi_views.models import Token

    Token.objects.exclude(pk=seed.pk).delete()
    past = datetime.now(UTC) - timedelta(minutes=5)
    Token.objects.bulk_create(
        [
            Token(
                user_id=seed.user_id,
                character_id=seed.character_id,
                character_name=seed.character_name,
                character_owner_hash=seed.character_owner_hash,
                access_token=seed.access_token,
                refresh_token=seed.refresh_token,
                expires_at=past,
            )
            for _ in range(count - 1)
        ],
        batch_size=500,
    )
    Token.objects.filter(pk=seed.pk).update(expires_at=past)


def _theirs_expired(seed, count: int) -> None:
    from esi.models import Token as EsiToken

    EsiToken.objects.all().delete()
    rows = EsiToken.objects.bulk_create(
        [
            EsiToken(
                user_id=seed.user_id,
                character_id=seed.character_id,
                character_name=seed.character_name,
                character_owner_hash=seed.character_owner_hash,
                token_type="character",
                access_token=seed.access_token,
                refresh_token=seed.refresh_token,
                sso_version=2,
            )
            for _ in range(count)
        ],
        batch_size=500,
    )
    EsiToken.objects.filter(pk__in=[r.pk for r in rows]).update(
        created=datetime.now(UTC) - timedelta(hours=2)
    )


def bench_refresh(fake, seed, count: int, repeat: int) -> dict:
    from esi.models import Token as EsiToken

    from esi_views.cleanup import cleanup_token
    from esi_views.models import Token

    fake.set_latency(LATENCY)
    # Warm-up, unmeasured: JWKS fetches, thread pools and HTTP sessions, for both.
    _ours_expired(seed, 50)
    Token.objects.all().bulk_refresh()
    _theirs_expired(seed, 10)
    EsiToken.objects.all().bulk_refresh()
    runs: dict[str, list[float]] = {"ours_cleanup": [], "ours_bulk": [], "theirs_bulk": []}
    calls: dict[str, list[int]] = {key: [] for key in runs}
    checks: dict[str, list[int]] = {key: [] for key in runs}
    for _ in range(repeat):
        for key in runs:
            if key.startswith("ours"):
                _ours_expired(seed, count)
            else:
                _theirs_expired(seed, count)
            before = fake.refresh_calls
            started = time.perf_counter()
            if key == "ours_cleanup":
                done = cleanup_token().refreshed
            elif key == "ours_bulk":
                done = Token.objects.all().bulk_refresh().count()  # all are expired
            else:
                done = EsiToken.objects.all().bulk_refresh().count()
            runs[key].append(time.perf_counter() - started)
            calls[key].append(fake.refresh_calls - before)
            checks[key].append(done)
            print(f"  {key}: {done} refreshed in {runs[key][-1]:.2f} s", file=sys.stderr)
    fake.set_latency(0.0)
    Token.objects.exclude(pk=seed.pk).delete()
    EsiToken.objects.all().delete()
    return {
        key: {
            "median_s": statistics.median(times),
            "runs_s": times,
            "tokens_per_s": count / statistics.median(times),
            "sso_calls": calls[key],
            "refreshed": checks[key],
        }
        for key, times in runs.items()
    }


# -- (b) a million rows ----------------------------------------------------------------------


def _copy_rows(seed, dead_refresh: str, rows: int) -> dict[str, int]:
    """COPY ``rows`` tokens: ~1% expired (refreshable, dead, no refresh token, user-less)."""
    from django.db import connection

    from esi_views.models import Token

    Token.objects.exclude(pk=seed.pk).delete()
    prep = Token._meta.get_field("access_token").get_prep_value
    access, good_refresh, dead = (
        prep(seed.access_token),
        prep(seed.refresh_token),
        prep(dead_refresh),
    )
    expired_ok, expired_dead, no_refresh, old_user_less, young_user_less = (
        rows * 8 // 1000,
        rows // 1000,
        rows // 2000,
        rows // 4000,
        rows // 4000,
    )
    fresh = rows - 1 - (expired_ok + expired_dead + no_refresh + old_user_less + young_user_less)
    now = datetime.now(UTC)
    old = now - timedelta(days=2)
    user = str(seed.user_id)
    kinds = [  # (count, user, created, expires_at(i), refresh token)
        (
            fresh,
            user,
            now,
            lambda i: now + timedelta(minutes=2, microseconds=i * 1000),
            good_refresh,
        ),
        (
            expired_ok,
            user,
            old,
            lambda i: now - timedelta(minutes=1, microseconds=i * 997),
            good_refresh,
        ),
        (expired_dead, user, old, lambda i: now - timedelta(minutes=1, microseconds=i * 991), dead),
        (no_refresh, user, old, lambda i: now - timedelta(minutes=1, microseconds=i * 983), ""),
        (
            old_user_less,
            None,
            old,
            lambda i: now - timedelta(hours=1, microseconds=i),
            good_refresh,
        ),
        (
            young_user_less,
            None,
            now,
            lambda i: now - timedelta(minutes=1, microseconds=i),
            good_refresh,
        ),
    ]
    columns = (
        "created, updated, user_id, character_id, character_name, character_owner_hash,"
        " token_type, access_token, refresh_token, expires_at, scope_digest"
    )
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor: COPY FROM STDIN
        with raw.copy(f"COPY esi_views_token ({columns}) FROM STDIN") as copy:
            for count, user_id, created, expires, refresh in kinds:
                for i in range(count):
                    copy.write_row(
                        (
                            created,
                            created,
                            user_id,
                            seed.character_id,
                            seed.character_name,
                            seed.character_owner_hash,
                            "character",
                            access,
                            refresh,
                            expires(i),
                            "",
                        )
                    )
        cursor.execute("ANALYZE esi_views_token")
    return {
        "fresh": fresh + 1,
        "expired_refreshable": expired_ok,
        "expired_dead": expired_dead,
        "expired_no_refresh_token": no_refresh,
        "user_less_old": old_user_less,
        "user_less_young_expired": young_user_less,
    }


_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, os.environ["BENCH_ROOT"])
import django
django.setup()
from django.conf import settings
from django.db import connection
for name, value in json.loads(os.environ["BENCH_SETTINGS"]).items():
    setattr(settings, name, value)
from esi_views.conf import esi_settings
esi_settings.reload()
from esi_views.cleanup import cleanup_token, cleanup_token_subset
queries = [0]
def count(execute, sql, params, many, context):
    queries[0] += 1
    return execute(sql, params, many, context)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {"baseline_rss_kb": baseline}
with connection.execute_wrapper(count):
    for name, run in (("full", cleanup_token),
                      ("subset", lambda: cleanup_token_subset(48, bucket=0))):
        queries[0] = 0
        started = time.perf_counter()
        report = run()
        out[name] = {"wall_s": time.perf_counter() - started, "queries": queries[0],
                     "report": report.as_dict()}
out["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def bench_million(fake, seed, rows: int) -> dict:
    from esi_views.testing.logins import create_token

    dead = create_token(fake, user=None, character_id=90000002, character_name="Dead Pilot")
    dead_refresh = dead.refresh_token
    dead.delete()
    fake.revoke_all(90000002)
    started = time.perf_counter()
    mix = _copy_rows(seed, dead_refresh, rows)
    load_s = time.perf_counter() - started
    print(f"  loaded {rows} rows in {load_s:.1f} s", file=sys.stderr)
    fake.set_latency(LATENCY)
    before = fake.refresh_calls
    env = {
        **os.environ,
        "BENCH_ROOT": str(ROOT),
        "BENCH_SETTINGS": json.dumps({**fake.settings(), "ESI_SSO_ISSUERS": [common.EVE_ISSUER]}),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=False
    )
    fake.set_latency(0.0)
    if done.returncode:
        raise SystemExit(f"child failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(rows=rows, mix=mix, load_s=load_s, sso_calls=fake.refresh_calls - before)
    return result


# -- report ------------------------------------------------------------------------------------


def write_markdown(refresh: dict, million: dict, count: int, repeat: int) -> str:
    ours_c, ours_b, theirs = (refresh["ours_cleanup"], refresh["ours_bulk"], refresh["theirs_bulk"])
    ratio_c = ours_c["tokens_per_s"] / theirs["tokens_per_s"]
    ratio_b = ours_b["tokens_per_s"] / theirs["tokens_per_s"]
    full, subset = million["full"], million["subset"]
    out = io.StringIO()
    w = out.write
    w("# Cleanup benchmark\n\n")
    w(f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {common.machine()}.\n")
    w("Command: `.venv-bench/bin/python bench/cleanup.py` (see bench/cleanup.py).\n\n")
    w(f"## (a) Refreshing {count:,} expired tokens, fake SSO latency {LATENCY * 1000:.0f} ms\n\n")
    w(f"Median of {repeat} runs, all in one process and one run of the script.\n\n")
    w("| | median time | tokens/s | vs django-esi | SSO calls per run | refreshed |\n")
    w("|---|---:|---:|---:|---|---|\n")
    for label, row, ratio in (
        ("django-esi 10 `Token.objects.all().bulk_refresh()`", theirs, 1.0),
        ("ours `cleanup_token()` (batches of 100)", ours_c, ratio_c),
        ("ours `Token.objects.all().bulk_refresh()`", ours_b, ratio_b),
    ):
        w(
            f"| {label} | {row['median_s']:.2f} s | {row['tokens_per_s']:.0f} | "
            f"{ratio:.1f}x | {row['sso_calls']} | {row['refreshed']} |\n"
        )
    w(
        f"\nAll runs (s): django-esi {[round(t, 2) for t in theirs['runs_s']]}, "
        f"cleanup_token {[round(t, 2) for t in ours_c['runs_s']]}, "
        f"bulk_refresh {[round(t, 2) for t in ours_b['runs_s']]}.\n\n"
    )
    w(f"## (b) Cleanup over {million['rows']:,} token rows\n\n")
    w(
        "Rows loaded with COPY ("
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in million["mix"].items())
        + f") in {million['load_s']:.0f} s. Measured in a fresh child process; the fake SSO "
        f"answers in {LATENCY * 1000:.0f} ms.\n\n"
    )
    w("| run | wall time | SQL queries | refreshed | deleted | skipped | SSO calls |\n")
    w("|---|---:|---:|---:|---|---:|---:|\n")
    for label, run in (
        ("`cleanup_token()`", full),
        ("`cleanup_token_subset(48)` (one bucket, after the full run)", subset),
    ):
        report = run["report"]
        skipped = (
            report["skipped_transient"] + report["skipped_locked"] + report["skipped_rejected"]
        )
        w(
            f"| {label} | {run['wall_s']:.1f} s | {run['queries']:,} | {report['refreshed']:,} | "
            f"{sum(report['deleted'].values()):,} {report['deleted']} | {skipped} | "
            f"{report['sso_calls']:,} |\n"
        )
    w(
        f"\nPeak RSS of the cleanup process: **{million['peak_rss_kb'] / 1024:.0f} MB** "
        f"(after Django setup, before cleanup: {million['baseline_rss_kb'] / 1024:.0f} MB). "
        f"Young user-less tokens kept: {full['report']['kept_young_single_use']:,}.\n"
    )
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--refresh", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-million", action="store_true")
    args = parser.parse_args(argv)
    common.prepare()
    from django.contrib.auth import get_user_model

    with common.fake_sso() as fake:
        common.point_at(fake)
        from esi_views.models import Token

        user, _ = get_user_model().objects.get_or_create(username="bench")
        seed = common.seed_token(fake, user)
        print("(a) refresh throughput", file=sys.stderr)
        refresh = bench_refresh(fake, seed, args.refresh, args.repeat)
        million = None
        if not args.skip_million:
            print("(b) cleanup over many rows", file=sys.stderr)
            million = bench_million(fake, seed, args.rows)
            Token.objects.all().delete()
    if million is None:
        print(json.dumps(refresh, indent=2))
        return 0
    common.write_results(RESULTS, write_markdown(refresh, million, args.refresh, args.repeat))
    print(
        f"peak RSS of this (parent) process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
