"""Benchmark: protected views, ours vs django-esi 10's decorators.

    .venv-bench/bin/python bench/views.py [--requests 30]

For a logged-in user with 1, 10 and 100 valid tokens (each with five scopes, two of
them required): SQL queries per request and median latency of a ``token_required``
GET (which renders the token selection page) and a ``tokens_required`` GET (which
runs the view with all tokens), through Django's test client. Writes
bench/results/views.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.views_settings"
from bench import common  # after choosing the settings module

RESULTS = common.ROOT / "bench" / "results" / "views.md"
SCOPES = [
    "esi-skills.read_skills.v1",
    "esi-wallet.read_character_wallet.v1",
    "esi-assets.read_assets.v1",
    "esi-mail.read_mail.v1",
    "esi-clones.read_clones.v1",
]
COUNTS = (1, 10, 100)


def _tokens(user, count: int) -> None:
    """``count`` valid tokens with five scopes each, in both libraries' tables."""
    from esi.models import Scope as EsiScope
    from esi.models import Token as EsiToken

    from esi_views.models import Scope, Token

    for token_model, scope_model, extra in (
        (Token, Scope, {"expires_at": datetime.now(UTC) + timedelta(hours=1)}),
        (EsiToken, EsiScope, {"token_type": "character", "sso_version": 2}),
    ):
        token_model.objects.all().delete()
        for name in SCOPES:
            scope_model.objects.get_or_create(name=name)
        scopes = list(scope_model.objects.filter(name__in=SCOPES))
        rows = token_model.objects.bulk_create(
            token_model(
                user=user,
                character_id=93000000 + i,
                character_name=f"Alt {i:03}",
                character_owner_hash=f"hash{i}=",
                access_token="a.b.c",
                refresh_token="refresh",
                **extra,
            )
            for i in range(count)
        )
        link = token_model.scopes.through
        link.objects.bulk_create(
            link(
                **{
                    f"{token_model._meta.model_name}_id": t.pk,
                    f"{scope_model._meta.model_name}_id": s.pk,
                }
            )
            for t in rows
            for s in scopes
        )


def _measure(client, url: str, requests: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    statuses, times, queries = set(), [], []
    for _ in range(requests + 2):  # two warm-up requests
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
        statuses.add(response.status_code)
        queries.append(len(captured))
    return {
        "median_ms": statistics.median(times[2:]) * 1000,
        "queries": max(queries[2:]),
        "statuses": sorted(statuses),
        "bytes": len(response.content),
    }


def run(requests: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench-views")
    client = Client()
    client.force_login(user)
    results = {}
    for count in COUNTS:
        _tokens(user, count)
        for view in ("token", "tokens"):
            for library in ("theirs", "ours"):
                results[(count, view, library)] = _measure(client, f"/{library}/{view}/", requests)
                row = results[(count, view, library)]
                print(
                    f"  {count:>3} tokens {view:<6} {library:<6} {row['median_ms']:6.1f} ms "
                    f"{row['queries']:>3} queries {row['statuses']}",
                    file=sys.stderr,
                )
    return results


def write_markdown(results: dict, requests: int) -> str:
    lines = [
        "# Views benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {common.machine()}.",
        "Command: `make bench` (runs `.venv-bench/bin/python bench/views.py`).",
        "",
        "A logged-in user with N valid tokens, each with five scopes, two of them required "
        "by the view. `token_required` answers with the token selection page; "
        f"`tokens_required` runs the view with all N tokens. Median of {requests} requests "
        "through Django's test client after two warm-up requests; queries are per request "
        "(session and user included).",
        "",
        "| tokens | decorator | django-esi 10 | ours | queries django-esi | queries ours "
        "| ours faster |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for count in COUNTS:
        for view in ("token", "tokens"):
            theirs, ours = results[(count, view, "theirs")], results[(count, view, "ours")]
            lines.append(
                f"| {count} | `{view}_required` | {theirs['median_ms']:.1f} ms "
                f"| {ours['median_ms']:.1f} ms | {theirs['queries']} | {ours['queries']} "
                f"| {theirs['median_ms'] / ours['median_ms']:.1f}x |"
            )
    statuses = sorted({s for row in results.values() for s in row["statuses"]})
    lines += ["", f"Every response was HTTP {', '.join(map(str, statuses))}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args(argv)
    common.prepare()
    results = run(args.requests)
    common.write_results(RESULTS, write_markdown(results, args.requests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
