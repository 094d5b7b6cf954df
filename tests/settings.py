"""Settings for the test suite.

``ESI_TEST_DATABASE_URL`` (e.g. ``postgres://postgres@127.0.0.1:5432/test``) and
``ESI_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/15``) select real services;
without them the suite uses SQLite and fakeredis. ``ESI_TEST_REQUIRE_SERVICES=1``
(set by .ci/run) turns a missing or unreachable service into a failure: see
tests/conftest.py, which also prints the backends in the pytest header.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "esi_views",
    "rest_framework",
    "drf_spectacular",
    "esi_drf",
]

REST_FRAMEWORK = {
    # EveSSOAuthentication first: DRF takes WWW-Authenticate from the first class.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "esi_drf.authentication.EveSSOAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "esi_drf.schema.postprocess_error_responses",
    ],
}

AUTHENTICATION_BACKENDS = [
    "esi_views.auth.EveSSOBackend",
    "django.contrib.auth.backends.ModelBackend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Pages and API answers in the browser's language (tests/test_translations.py).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASE_URL = os.environ.get("ESI_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("ESI_TEST_REDIS_URL", "")
REQUIRE_SERVICES = os.environ.get("ESI_TEST_REQUIRE_SERVICES") == "1"

if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
else:
    # The test database is then in memory (shared between this process's threads), so
    # parallel runs on one machine never collide.
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}
    }

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # Django's own Redis backend, speaking to an in-process fakeredis server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://fakeredis.invalid:6379/0",
            "OPTIONS": {"connection_class": __import__("fakeredis").FakeRedisConnection},
        }
    }

ESI_SSO_CLIENT_ID = "tests-client-id"
ESI_SSO_CLIENT_SECRET = "tests-client-secret"
ESI_SSO_CALLBACK_URL = "http://testserver/esi/callback/"
ESI_USER_CONTACT_EMAIL = "tests@example.com"
# Tests must never reach the real EVE SSO: anything not pointed at the fake fails fast.
ESI_SSO_BASE_URL = "http://127.0.0.1:9"
ESI_SSO_MAX_RETRIES = 1
ESI_SSO_BACKOFF_FACTOR = 0.01
