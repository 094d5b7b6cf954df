"""Running code in other processes against this test's database and fake SSO.

Only PostgreSQL row locks keep processes apart, so the tests that use this need it;
``require_postgresql()`` says so once for all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

# The child's preamble: Django with the parent's test database and fake SSO settings.
PREAMBLE = """
import json, os, sys, time
import django
from django.conf import settings
django.setup()
for name, value in json.loads(os.environ["ESI_CHILD_SETTINGS"]).items():
    setattr(settings, name, value)
"""


# A starting gate for children (a PostgreSQL advisory lock the parent holds): they are set
# up and connected before it opens, and the parent sees them waiting in pg_locks, so no
# wall-clock start time is needed. The child calls wait_at_gate(key).
GATE = """
def wait_at_gate(key):
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock_shared(%s)", [key])
        cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [key])
"""


def waiting_at_gate(key: int) -> int:
    """How many sessions are waiting at the advisory lock ``key``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objid = %s AND NOT granted",
            [key],
        )
        return cursor.fetchone()[0]


def require_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("cross-process row locking needs PostgreSQL (CI runs this on it)")


def start(script: str, *args: object, fake_sso) -> subprocess.Popen:
    """Run ``PREAMBLE + script`` with ``args`` in a child process; read it with communicate()."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ESI_TEST_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ESI_CHILD_SETTINGS": json.dumps(fake_sso.settings()),
    }
    return subprocess.Popen(
        [sys.executable, "-c", PREAMBLE + GATE + script, *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
