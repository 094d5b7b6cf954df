"""Settings of the demo site.

By default the site talks to the fake EVE SSO that ``run_demo.py`` starts
(``DEMO_FAKE_SSO_URL``, default http://127.0.0.1:8765). When ``ESI_SSO_CLIENT_ID``,
``ESI_SSO_CLIENT_SECRET`` and ``ESI_SSO_CALLBACK_URL`` are all set in the environment,
it uses the real EVE SSO instead.

Other environment variables:

- ``DEMO_DATABASE``: path of the SQLite database (default ``sample_site/db.sqlite3``).
- ``DEMO_REDIS_URL``: a real Redis for the cache and the rate limiter; without it an
  in-process fakeredis is used, which is enough while Celery runs eagerly.
- ``DEMO_CELERY_BROKER_URL``: send tasks to a Celery worker instead of running them
  in the web process (set ``DEMO_REDIS_URL`` too, so the worker and the site share
  the limiter and the progress records).
- ``DEMO_TASK_RATE``: the rate of the demo's rate-limited task (default ``2/s``).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A demo: never deploy these values.
# A demo on 127.0.0.1 only. Do not copy these two lines into a real site: the default
# key is public, and esi_views derives its token encryption key from SECRET_KEY.
SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "django-esi-views-demo-only-not-secret")
DEBUG = os.environ.get("DEMO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "sample_site.urls"
WSGI_APPLICATION = "sample_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "esi_views",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served from here: no CDN
    "esi_drf",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project templates win over apps': templates/esi_views/base.html puts the
        # library's selection and error pages into the demo's layout.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo.context.demo",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE") or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}

REDIS_URL = os.environ.get("DEMO_REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # Django's Redis cache backend talking to an in-process fakeredis server: the rate
    # limiter's Lua script runs in it. Good for one process (eager Celery), not workers.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://fakeredis.invalid:6379/0",
            "OPTIONS": {"connection_class": __import__("fakeredis").FakeRedisConnection},
        }
    }

AUTHENTICATION_BACKENDS = [
    "esi_views.auth.EveSSOBackend",  # log in with an EVE character: esi_views:login
    "django.contrib.auth.backends.ModelBackend",  # the admin's password login
]
LOGIN_URL = "esi_views:login"
LOGIN_REDIRECT_URL = "demo:home"
LOGOUT_REDIRECT_URL = "demo:home"
# What logging in and "add a character" ask for: what the demo's pages need.
ESI_LOGIN_SCOPES = ["publicData", "esi-skills.read_skills.v1"]
# What the characters page offers under "grant more scopes".
ESI_GRANTABLE_SCOPES = [
    "publicData",
    "esi-skills.read_skills.v1",
    "esi-wallet.read_character_wallet.v1",
]

STATIC_URL = "static/"

# -- EVE SSO ----------------------------------------------------------------------------

SITE_URL = os.environ.get("DEMO_SITE_URL", "http://127.0.0.1:8000")
_REAL = ("ESI_SSO_CLIENT_ID", "ESI_SSO_CLIENT_SECRET", "ESI_SSO_CALLBACK_URL")
USE_REAL_SSO = all(os.environ.get(name) for name in _REAL)
ESI_USER_CONTACT_EMAIL = os.environ.get("ESI_USER_CONTACT_EMAIL", "demo@example.com")

if USE_REAL_SSO:
    ESI_SSO_CLIENT_ID = os.environ["ESI_SSO_CLIENT_ID"]
    ESI_SSO_CLIENT_SECRET = os.environ["ESI_SSO_CLIENT_SECRET"]
    ESI_SSO_CALLBACK_URL = os.environ["ESI_SSO_CALLBACK_URL"]
    FAKE_SSO_URL = ""
else:
    # What FakeEveSSO.settings() returns, for a fake SSO started elsewhere.
    FAKE_SSO_URL = os.environ.get("DEMO_FAKE_SSO_URL", "http://127.0.0.1:8765").rstrip("/")
    ESI_SSO_BASE_URL = FAKE_SSO_URL
    ESI_SSO_CLIENT_ID = "fake-client-id"
    ESI_SSO_CLIENT_SECRET = "fake-client-secret"
    ESI_SSO_CALLBACK_URL = SITE_URL.rstrip("/") + "/esi/callback/"
    ESI_CHARACTER_PORTRAIT_URL = FAKE_SSO_URL + "/characters/{character_id}/portrait"

# -- DRF and OpenAPI ----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "esi_drf.authentication.EveSSOAuthentication",  # first: its 401 challenge wins
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django-esi-views demo API",
    "DESCRIPTION": "Endpoints protected by esi_drf: your browser session or an EVE SSO "
    "access token as a bearer token both work.\n\n"
    "**Try it out (demo only):** get your access token on "
    "[/api-demo/token/](/api-demo/token/), press **Authorize** and paste it "
    "under `eveBearer`. (`eveSSO` documents how real clients get a token; "
    "the demo's SSO application has no Swagger UI callback registered.)",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # 401 and 403 (esi_token_required, with login_url) on every protected operation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "esi_drf.schema.postprocess_error_responses",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# -- Celery and the rate-limited task ---------------------------------------------------

CELERY_BROKER_URL = os.environ.get("DEMO_CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
DEMO_TASK_RATE = os.environ.get("DEMO_TASK_RATE", "2/s")
# Our own prefix, so the demo never shares buckets with another site on the same Redis.
ESI_RATE_LIMIT_KEY_PREFIX = "esi_views_demo:ratelimit:"
