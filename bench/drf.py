"""What esi_drf costs per request: bearer-token authentication vs plain DRF endpoints.

Self-contained (configures Django itself; in-memory SQLite, LocMem cache, a FakeEveSSO
on 127.0.0.1 for the code exchange and the JWKS). Requests go through Django's test
``Client`` in-process: no sockets, so the figures are the server-side cost of the
Django + DRF stack, which is where esi_drf's work (JWT verification against the warm
JWKS, one user lookup) happens.

    .venv/bin/python bench/drf.py [--requests 2000] [--runs 5]

writes bench/results/drf.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SKILLS = "esi-skills.read_skills.v1"
CHARACTER_ID = 90009001
STATIC_TOKEN = "bench-static-token"


def configure(sso_settings: dict) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench-only",
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "esi_views",
            "rest_framework",
            "esi_drf",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "esi_drf.authentication.EveSSOAuthentication",
                "rest_framework.authentication.SessionAuthentication",
            ],
            "UNAUTHENTICATED_USER": None,
        },
        ESI_USER_CONTACT_EMAIL="bench@example.com",
        **sso_settings,
    )
    django.setup()


# -- the endpoints (defined after settings exist) -------------------------------------------

urlpatterns: list = []


def build_urls() -> None:
    from django.contrib.auth import get_user_model
    from django.urls import path
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from esi_drf.authentication import EveSSOAuthentication
    from esi_drf.permissions import HasESIToken

    user = get_user_model().objects.get(username="pilot")

    class StaticToken(BaseAuthentication):
        """The cheapest possible authenticator: a constant and an in-memory user."""

        def authenticate(self, request):
            if request.headers.get("Authorization") == f"Token {STATIC_TOKEN}":
                return user, STATIC_TOKEN
            return None

    class Hello(APIView):
        def get(self, request):
            return Response({"user": request.user.pk})

    class Plain(Hello):
        authentication_classes = [StaticToken]
        permission_classes = [IsAuthenticated]

    class PlainSession(Hello):
        permission_classes = [IsAuthenticated]

    class Bearer(Hello):
        authentication_classes = [EveSSOAuthentication]
        permission_classes = [HasESIToken.with_scopes(SKILLS)]

    class SessionToken(Hello):
        permission_classes = [HasESIToken.with_scopes(SKILLS)]

    urlpatterns[:] = [
        path("plain/", Plain.as_view()),
        path("plain-session/", PlainSession.as_view()),
        path("bearer/", Bearer.as_view()),
        path("session-token/", SessionToken.as_view()),
    ]


# -- measuring ----------------------------------------------------------------------------------


def measure(client, url: str, headers: dict, requests: int, runs: int) -> dict:
    from django.db import connection

    for _ in range(50):  # warm-up: JWKS, imports, URL resolver
        assert client.get(url, **headers).status_code == 200
    queries: list[str] = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    # A wrapper, not CaptureQueriesContext: the request_started signal clears the log.
    with connection.execute_wrapper(count):
        assert client.get(url, **headers).status_code == 200
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(requests):
            client.get(url, **headers)
        rates.append(requests / (time.perf_counter() - start))
    return {"rps": statistics.median(rates), "queries": len(queries), "rates": rates}


def time_verification(raw: str, count: int) -> float:
    """Median microseconds of one verify_access_token call (warm JWKS), over 5 runs."""
    from esi_views.access_tokens import verify_access_token

    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            verify_access_token(raw)
        runs.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "drf.md")
    args = parser.parse_args(argv)

    from esi_views.testing.fake_sso import FakeEveSSO

    with FakeEveSSO() as sso:
        configure(sso.settings())
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        from esi_views.testing.logins import create_token

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("pilot")
        create_token(sso, user=user, character_id=CHARACTER_ID, scopes=SKILLS)
        build_urls()
        bearer = {"HTTP_AUTHORIZATION": "Bearer " + sso.mint_access_token(CHARACTER_ID, SKILLS)}
        session = Client()
        session.force_login(user)
        jwks_before = sso.calls["jwks"]
        cases = [
            (
                "plain IsAuthenticated, static token (baseline)",
                Client(),
                "/plain/",
                {"HTTP_AUTHORIZATION": f"Token {STATIC_TOKEN}"},
            ),
            ("plain IsAuthenticated, session", session, "/plain-session/", {}),
            ("EveSSOAuthentication + HasESIToken (bearer JWT)", Client(), "/bearer/", bearer),
            ("session + HasESIToken (stored token)", session, "/session-token/", {}),
        ]
        results = [
            (name, measure(c, url, h, args.requests, args.runs)) for name, c, url, h in cases
        ]
        verify_us = time_verification(bearer["HTTP_AUTHORIZATION"].split()[1], args.requests)
        jwks_calls = sso.calls["jwks"] - jwks_before

    write_report(args, results, jwks_calls, verify_us)
    print(args.output.read_text())
    return 0


def write_report(args, results, jwks_calls: int, verify_us: float) -> None:
    baseline = results[0][1]["rps"]
    session_baseline = results[1][1]["rps"]
    lines = [
        "# esi_drf: cost per request",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.processor() or platform.machine()}, {_cpu()}, {_cores()} cores), "
        f"Python {platform.python_version()}, Linux {platform.release()}.",
        "",
        "`bench/drf.py`: Django's test `Client`, in-process (no sockets), in-memory SQLite, "
        f"LocMem cache; {args.requests} GET requests per run, median of {args.runs} runs, "
        "after 50 warm-up requests (JWKS warm). Throughput is single-threaded.",
        "",
        "| Endpoint | req/s (median) | vs static-token baseline | vs session baseline "
        "| queries/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in results:
        lines.append(
            f"| {name} | {result['rps']:,.0f} | {baseline / result['rps']:.2f}x time "
            f"| {session_baseline / result['rps']:.2f}x time | {result['queries']} |"
        )
    bearer = results[2][1]
    lines += [
        "",
        f"Bearer overhead: {1000 / bearer['rps'] - 1000 / baseline:.3f} ms per request over "
        f"the static-token baseline ({baseline / bearer['rps']:.2f}x its time); "
        f"JWKS fetches during all measured requests: {jwks_calls}. Of that, JWT "
        f"verification (`verify_access_token`, warm JWKS) takes {verify_us:.0f} µs; the "
        "rest is mostly the user lookup, one ORM query (the session baseline pays about "
        "the same for its two: session and user). Other engineers' jobs share the 2 cores: "
        "compare rows of one run, not runs.",
        "",
        "Per-run rates (req/s):",
        "",
        *(
            f"- {name}: " + ", ".join(f"{r:,.0f}" for r in result["rates"])
            for name, result in results
        ),
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
