"""What every benchmark shares: the database, Django, a fake SSO both libraries accept.

The benchmarks run in ``.venv-bench`` (``make bench`` builds it): django-esi 10 from
PyPI and this package, side by side in one Django project (bench/settings.py).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from multiprocessing.managers import BaseManager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
# django-esi hard-codes EVE's issuer; the fake signs with it so both libraries verify.
EVE_ISSUER = "login.eveonline.com"


def ensure_database() -> None:
    import dj_database_url
    import psycopg

    from bench import settings

    db = dj_database_url.parse(settings.DATABASE_URL)
    params = {
        "host": db["HOST"],
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def setup_django() -> None:
    import django

    django.setup()


class _EveIssuerSSO:
    """A FakeEveSSO in its own process (so its JWT signing does not share our GIL),
    minting tokens with EVE's real issuer; driven through a multiprocessing proxy."""

    def __init__(self) -> None:
        from esi_views.testing import FakeEveSSO

        self.sso = FakeEveSSO(issuer=EVE_ISSUER).start()

    def base_url(self) -> str:
        return self.sso.base_url

    def settings(self) -> dict:
        return self.sso.settings()

    def set_latency(self, seconds: float) -> None:
        self.sso.latency = seconds

    def set_refresh_token_mode(self, mode: str) -> None:
        self.sso.refresh_token_mode = mode

    def refresh_calls(self) -> int:
        return self.sso.calls["token:refresh_token"]

    def characters(self) -> list:
        return self.sso.characters

    def add_character(self, character_id: int, name: str, owner_hash=None):
        return self.sso.add_character(character_id, name, owner_hash)

    def select_character(self, character_id: int) -> None:
        self.sso.select_character(character_id)

    def revoke_all(self, character_id: int) -> None:
        self.sso.revoke_all(character_id)

    def stop(self) -> None:
        self.sso.stop()


class _Manager(BaseManager):
    pass


_Manager.register("EveIssuerSSO", _EveIssuerSSO)


class _Fake:
    """The parent's handle: what the benchmark and esi_views.testing.logins use."""

    def __init__(self, proxy) -> None:
        self._proxy = proxy
        self.base_url = proxy.base_url()

    @property
    def characters(self) -> list:
        return self._proxy.characters()

    @property
    def refresh_calls(self) -> int:
        return self._proxy.refresh_calls()

    def __getattr__(self, name):
        return getattr(self._proxy, name)


@contextlib.contextmanager
def fake_sso():
    with _Manager() as manager:
        proxy = manager.EveIssuerSSO()
        try:
            yield _Fake(proxy)
        finally:
            proxy.stop()


def point_at(fake) -> None:
    from django.conf import settings
    from esi import app_settings as esi_app_settings

    from esi_views.conf import esi_settings
    from esi_views.jwks import clear_jwks_cache

    for name, value in fake.settings().items():
        setattr(settings, name, value)
    esi_settings.reload()
    clear_jwks_cache()
    esi_app_settings.ESI_TOKEN_URL = f"{fake.base_url}/v2/oauth/token"
    esi_app_settings.ESI_TOKEN_JWK_SET_URL = f"{fake.base_url}/oauth/jwks"


def seed_token(fake, user):
    """One real token (code exchange at the fake): its refresh token serves every copy."""
    from esi_views.testing.logins import create_token

    return create_token(
        fake,
        user=user,
        character_id=90000001,
        character_name="Bench Pilot",
        scopes=["esi-skills.read_skills.v1"],
    )


def machine() -> str:
    """One line naming the machine and the versions measured."""
    from django.db import connection

    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kb = int(meminfo.readline().split()[1])
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    from importlib.metadata import version

    import django

    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GB RAM, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"Django {django.get_version()}, PostgreSQL {pg}, django-esi "
        f"{version('django-esi')}, ESI_REFRESH_CONCURRENCY="
        f"{__import__('esi_views.conf').conf.esi_settings.REFRESH_CONCURRENCY}"
    )


def vacuum(*tables: str) -> None:
    """VACUUM ANALYZE, so rows deleted by an earlier benchmark do not slow this one down."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


TOKEN_TABLES = ("esi_views_token", "esi_views_token_scopes", "esi_token", "esi_token_scopes")


def prepare() -> None:
    """Database, Django, migrations; both libraries' token tables empty and vacuumed."""
    ensure_database()
    setup_django()
    from django.core.management import call_command
    from esi.models import Token as EsiToken

    from esi_views.models import Token

    call_command("migrate", verbosity=0)
    Token.objects.all().delete()
    EsiToken.objects.all().delete()
    vacuum(*TOKEN_TABLES)


def write_results(path: Path, markdown: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    print(markdown)
