"""Benchmark: refreshing under contention, and require_valid(), ours vs django-esi 10.

    .venv-bench/bin/python bench/refresh.py [--trials 5] [--repeat 5]

(a) 8 threads, each with its own database connection, need the same expired token at
    once (``valid_access_token()``): SSO calls made, and whether the token survives
    when the SSO rotates refresh tokens. ``--trials`` runs per library and mode.
(b) ``require_valid()`` over 100 tokens of which 10 are expired, fake SSO at 20 ms:
    median wall time of ``--repeat`` runs and SQL queries, for both libraries.

Writes bench/results/refresh.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common

RESULTS = common.ROOT / "bench" / "results" / "refresh.md"
LATENCY = 0.02
WORKERS = 8


# -- setting tokens up, the same way for both libraries ------------------------------------


def _fresh_seed(fake, user, character_id: int):
    """A token with its own refresh token, from a real code exchange at the fake."""
    from esi_views.models import Token
    from esi_views.testing.logins import create_token

    Token.objects.filter(character_id=character_id).delete()
    return create_token(
        fake,
        user=user,
        character_id=character_id,
        character_name=f"Bench {character_id}",
        scopes=["esi-skills.read_skills.v1"],
    )


def _ours(seed, *, expired: bool):
    from esi_views.models import Token

    when = datetime.now(UTC) + (timedelta(minutes=-5) if expired else timedelta(minutes=15))
    Token.objects.filter(pk=seed.pk).update(expires_at=when)
    return seed.pk


def _theirs(seed, *, expired: bool):
    from esi.models import Token as EsiToken

    token = EsiToken.objects.create(
        user_id=seed.user_id,
        character_id=seed.character_id,
        character_name=seed.character_name,
        character_owner_hash=seed.character_owner_hash,
        token_type="character",
        access_token=seed.access_token,
        refresh_token=seed.refresh_token,
        sso_version=2,
    )
    if expired:
        EsiToken.objects.filter(pk=token.pk).update(created=datetime.now(UTC) - timedelta(hours=1))
    return token.pk


# -- (a) eight workers, one expired token -------------------------------------------------------


def _race(model, pk: int) -> tuple[int, int, list[str]]:
    from django.db import connection

    barrier, results, errors = threading.Barrier(WORKERS), [], []

    def worker():
        try:
            token = model.objects.get(pk=pk)
            barrier.wait()
            results.append(token.valid_access_token())
        except Exception as exc:
            errors.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return len(results), len(set(results)), errors


def bench_race(fake, user, trials: int) -> dict:
    from esi.models import Token as EsiToken

    from esi_views.models import Token

    fake.set_latency(LATENCY)
    out: dict = {}
    for mode in ("same", "rotate"):
        fake.set_refresh_token_mode(mode)
        for library, model, make in (("ours", Token, _ours), ("django-esi", EsiToken, _theirs)):
            rows = []
            for trial in range(trials):
                seed = _fresh_seed(fake, user, 91000000 + trial)
                pk = make(seed, expired=True)
                if library == "django-esi":
                    Token.objects.filter(pk=seed.pk).delete()
                before = fake.refresh_calls
                served, distinct, errors = _race(model, pk)
                rows.append(
                    {
                        "sso_calls": fake.refresh_calls - before,
                        "served": served,
                        "survived": model.objects.filter(pk=pk).exists(),
                        "distinct_access_tokens": distinct,
                        "errors": errors,
                    }
                )
                model.objects.filter(pk=pk).delete()
            out[(mode, library)] = rows
            print(f"  {mode} {library}: {[r['sso_calls'] for r in rows]} calls", file=sys.stderr)
    fake.set_refresh_token_mode("same")
    fake.set_latency(0.0)
    return out


# -- (b) require_valid over 100 tokens, 10 expired -----------------------------------------------


def _hundred(seed, library: str, user) -> None:
    from esi.models import Token as EsiToken

    from esi_views.models import Token

    now = datetime.now(UTC)
    if library == "ours":
        Token.objects.exclude(pk=seed.pk).delete()
        Token.objects.bulk_create(
            Token(
                user=user,
                character_id=seed.character_id,
                character_name=seed.character_name,
                character_owner_hash=seed.character_owner_hash,
                access_token=seed.access_token,
                refresh_token=seed.refresh_token,
                expires_at=now + (timedelta(minutes=-5) if i < 10 else timedelta(minutes=15)),
            )
            for i in range(99)
        )  # and the seed: 100
        Token.objects.filter(pk=seed.pk).update(expires_at=now + timedelta(minutes=15))
    else:
        EsiToken.objects.all().delete()
        rows = EsiToken.objects.bulk_create(
            EsiToken(
                user=user,
                character_id=seed.character_id,
                character_name=seed.character_name,
                character_owner_hash=seed.character_owner_hash,
                token_type="character",
                access_token=seed.access_token,
                refresh_token=seed.refresh_token,
                sso_version=2,
            )
            for _ in range(100)
        )
        EsiToken.objects.filter(pk__in=[r.pk for r in rows[:10]]).update(
            created=now - timedelta(hours=1)
        )


def bench_require_valid(fake, user, seed, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from esi.models import Token as EsiToken

    from esi_views.models import Token

    fake.set_latency(LATENCY)
    out = {}
    for library, model in (("ours", Token), ("django-esi", EsiToken)):
        times, queries, calls, valid = [], [], [], []
        for _ in range(repeat + 1):  # the first run warms JWKS, pools and sessions
            _hundred(seed, library, user)
            before = fake.refresh_calls
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                result = list(model.objects.filter(user=user).require_valid())
                times.append(time.perf_counter() - started)
            queries.append(len(captured))
            calls.append(fake.refresh_calls - before)
            valid.append(len(result))
        out[library] = {
            "median_s": statistics.median(times[1:]),
            "runs_s": times[1:],
            "queries": queries[1:],
            "sso_calls": calls[1:],
            "valid": valid[1:],
        }
        print(
            f"  {library}: {out[library]['median_s'] * 1000:.0f} ms, {queries[1:]} queries",
            file=sys.stderr,
        )
    fake.set_latency(0.0)
    EsiToken.objects.all().delete()
    return out


# -- report -------------------------------------------------------------------------------------


def write_markdown(race: dict, valid: dict, trials: int, repeat: int) -> str:
    lines = [
        "# Refresh benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {common.machine()}.",
        "Command: `make bench` (runs `.venv-bench/bin/python bench/refresh.py`).",
        "",
        f"## (a) {WORKERS} threads need the same expired token at once",
        "",
        f"Each thread has its own database connection and calls `valid_access_token()`; "
        f"the fake SSO answers in {LATENCY * 1000:.0f} ms. {trials} trials per row. "
        '"Survived" counts trials after which the token still exists; with rotating '
        "refresh tokens a second refresh with the old refresh token is refused.",
        "",
        "| refresh tokens | library | SSO calls per trial | callers served a token | distinct "
        "access tokens handed out | errors raised to callers | token survived |",
        "|---|---|---|---|---|---|---:|",
    ]
    for (mode, library), rows in race.items():
        errors = sorted({e for r in rows for e in r["errors"]}) or "none"
        lines.append(
            f"| {mode} | {library} | {[r['sso_calls'] for r in rows]} | "
            f"{[r['served'] for r in rows]} of {WORKERS} | "
            f"{[r['distinct_access_tokens'] for r in rows]} | {errors} | "
            f"{sum(r['survived'] for r in rows)}/{len(rows)} |"
        )
    ours, theirs = valid["ours"], valid["django-esi"]
    lines += [
        "",
        "## (b) `require_valid()` over 100 tokens, 10 of them expired",
        "",
        f"Fake SSO latency {LATENCY * 1000:.0f} ms; median of {repeat} runs after one "
        "warm-up run; ours refreshes with `ESI_REFRESH_CONCURRENCY` "
        f"= {__import__('esi_views.conf').conf.esi_settings.REFRESH_CONCURRENCY}.",
        "",
        "| library | median wall time | SQL queries | SSO calls | valid tokens returned |",
        "|---|---:|---|---|---|",
        f"| django-esi 10 | {theirs['median_s'] * 1000:.0f} ms | {theirs['queries']} | "
        f"{theirs['sso_calls']} | {theirs['valid']} |",
        f"| ours | {ours['median_s'] * 1000:.0f} ms | {ours['queries']} | {ours['sso_calls']} | "
        f"{ours['valid']} |",
        "",
        f"Ours is **{theirs['median_s'] / ours['median_s']:.1f}x** faster.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    common.prepare()
    from django.contrib.auth import get_user_model

    with common.fake_sso() as fake:
        common.point_at(fake)
        from esi_views.models import Token

        user, _ = get_user_model().objects.get_or_create(username="bench")
        print("(a) eight workers, one expired token", file=sys.stderr)
        race = bench_race(fake, user, args.trials)
        print("(b) require_valid over 100 tokens", file=sys.stderr)
        seed = common.seed_token(fake, user)
        valid = bench_require_valid(fake, user, seed, args.repeat)
        Token.objects.all().delete()
    common.write_results(RESULTS, write_markdown(race, valid, args.trials, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
