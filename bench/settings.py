"""Django settings for the benchmarks: django-esi 10 (app "esi") and ours side by side.

Run with .venv-bench (django-esi installed from PyPI, our package editable)::

    .venv-bench/bin/python bench/cleanup.py

``ESI_BENCH_DATABASE_URL`` (default postgres://postgres@127.0.0.1:5432/esi_bench) is
created when missing. SSO URLs are pointed at a FakeEveSSO by the benchmark itself.
"""

import os

import dj_database_url

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "esi",
    "esi_views",
]

DATABASE_URL = os.environ.get(
    "ESI_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esi_bench"
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}

# Both libraries cache the SSO's JWKS here; one process per measurement.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Both apps define Token.user without a related_name: the reverse accessors clash.
# Harmless here (nothing uses user.token_set), so the check is silenced; no
# rate_limited_task runs here, so neither is W010 (LocMem cache) relevant.
SILENCED_SYSTEM_CHECKS = ["fields.E304", "fields.E305", "esi_views.W010"]

# The FakeEveSSO's defaults (esi_views.testing.FakeEveSSO); its URL is set at run time.
ESI_SSO_CLIENT_ID = "fake-client-id"
ESI_SSO_CLIENT_SECRET = "fake-client-secret"
ESI_SSO_CALLBACK_URL = "http://testserver/esi/callback/"
ESI_USER_CONTACT_EMAIL = "bench@example.com"
# The fake mints tokens with EVE's real issuer so that django-esi, which hard-codes
# it, verifies them too.
ESI_SSO_ISSUERS = ["login.eveonline.com", "https://login.eveonline.com"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "esi_views.cleanup": {"handlers": ["console"], "level": "INFO"},
        "esi_views.refresh": {"level": "ERROR"},
        "esi": {"level": "CRITICAL"},
    },
}

# The library default (8) unless the benchmark is asked to try another.
ESI_REFRESH_CONCURRENCY = int(os.environ.get("ESI_BENCH_CONCURRENCY", "8"))
