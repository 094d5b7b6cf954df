"""System checks: the SSO application settings a site must provide.

Missing SSO settings are a warning under DEBUG (a developer is still setting up) and
an error otherwise (nobody could log in).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

REQUIRED_SSO_SETTINGS = ("ESI_SSO_CLIENT_ID", "ESI_SSO_CLIENT_SECRET", "ESI_SSO_CALLBACK_URL")
SSO_APPLICATIONS_URL = "https://developers.eveonline.com/applications"


@register(Tags.security)
def check_sso_settings(app_configs=None, **kwargs):
    missing = [name for name in REQUIRED_SSO_SETTINGS if not getattr(settings, name, "")]
    if not missing:
        return []
    level = Warning if settings.DEBUG else Error
    return [
        level(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set.",
            hint=(
                f"Create an application at {SSO_APPLICATIONS_URL} and copy its client id, "
                "secret and callback URL into your settings."
            ),
            id="esi_views.W001" if settings.DEBUG else "esi_views.E001",
        )
    ]


@register()
def check_contact_email(app_configs=None, **kwargs):
    if getattr(settings, "ESI_USER_CONTACT_EMAIL", ""):
        return []
    return [
        Warning(
            "ESI_USER_CONTACT_EMAIL is not set.",
            hint=(
                "CCP asks every SSO and ESI client to name a contact in its User-Agent; "
                "set ESI_USER_CONTACT_EMAIL to an address that reaches you."
            ),
            id="esi_views.W002",
        )
    ]


REDIS_CACHE_BACKENDS = (
    "django.core.cache.backends.redis.RedisCache",
    "django_redis.cache.RedisCache",
)


@register()
def check_rate_limit_redis(app_configs=None, **kwargs):
    """rate_limited_task coordinates workers through Redis; a per-process cache cannot."""
    from .conf import esi_settings
    from .ratelimit import registered_tasks

    if esi_settings.RATE_LIMIT_REDIS_CLIENT:  # a client factory: its business
        return []
    url = esi_settings.RATE_LIMIT_REDIS_URL
    if url:
        if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
            return []
        return [
            Error(
                f"ESI_RATE_LIMIT_REDIS_URL {url!r} is not a Redis URL.",
                hint="Use redis://host:port/db, rediss://... or unix:///path/to/socket.",
                id="esi_views.E011",
            )
        ]
    alias = esi_settings.RATE_LIMIT_CACHE_ALIAS
    backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
    if backend in REDIS_CACHE_BACKENDS:
        return []
    hint = (
        "Set ESI_RATE_LIMIT_REDIS_URL (e.g. 'redis://127.0.0.1:6379/1') or make the "
        f"{alias!r} cache django.core.cache.backends.redis.RedisCache (or django-redis)."
    )
    message = (
        f"rate_limited_task needs Redis, but the {alias!r} cache is "
        f"{backend or 'not configured'}: each worker would keep its own limit."
    )
    if registered_tasks:
        return [Error(message, hint=hint, id="esi_views.E010")]
    # No limited task imported (yet): maybe the site does not use it. Without Celery it
    # cannot; with Celery, say so anyway (task modules are often imported only by workers).
    from importlib.util import find_spec

    if find_spec("celery") is None:
        return []
    return [
        Warning(
            message,
            hint=hint + " Silence esi_views.W010 if you do not use rate_limited_task.",
            id="esi_views.W010",
        )
    ]


@register()
def check_sso_concurrency(app_configs=None, **kwargs):
    """The SSO token-endpoint cap is fleet-wide only with a Redis every process shares."""
    from .conf import esi_settings

    limit = esi_settings.SSO_MAX_CONCURRENCY
    if limit is None:
        return []
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        return [
            Error(
                f"ESI_SSO_MAX_CONCURRENCY must be a positive integer or None, not {limit!r}.",
                hint="The EVE SSO fails above about 5 concurrent token requests; 4 is the default.",
                id="esi_views.E012",
            )
        ]
    alias = esi_settings.RATE_LIMIT_CACHE_ALIAS
    if (
        esi_settings.RATE_LIMIT_REDIS_CLIENT
        or esi_settings.RATE_LIMIT_REDIS_URL
        or settings.CACHES.get(alias, {}).get("BACKEND", "") in REDIS_CACHE_BACKENDS
    ):
        return []
    return [
        Warning(
            f"ESI_SSO_MAX_CONCURRENCY ({limit}) holds per process only: there is no Redis to "
            "share it (the SSO fails above about 5 concurrent token requests in total).",
            hint="Fine for a single process. With several workers, set ESI_RATE_LIMIT_REDIS_URL "
            f"or make the {alias!r} cache Redis; silence esi_views.W012 otherwise.",
            id="esi_views.W012",
        )
    ]


@register()
def check_session_engine(app_configs=None, **kwargs):
    # Flows are bound to the session key; a signed-cookie session's key is its content,
    # which changes whenever the session does, so flows would be lost mid-way.
    if getattr(settings, "SESSION_ENGINE", "") != "django.contrib.sessions.backends.signed_cookies":
        return []
    return [
        Warning(
            "esi_views binds SSO flows to the session key, which signed-cookie sessions "
            "change on every write.",
            hint="Use a server-side SESSION_ENGINE (db, cache, cached_db or file).",
            id="esi_views.W003",
        )
    ]


PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register()
def check_shared_caches(app_configs=None, **kwargs):
    # The JWKS refetch limit and the cleanup subset cycle are shared through these
    # caches; a per-process cache still works, but each process keeps its own count.
    from .conf import esi_settings

    messages = []
    for setting, alias in (
        ("ESI_JWKS_CACHE_ALIAS", esi_settings.JWKS_CACHE_ALIAS),
        ("ESI_CLEANUP_CACHE_ALIAS", esi_settings.CLEANUP_CACHE_ALIAS),
    ):
        backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
        if backend in PER_PROCESS_CACHES:
            messages.append(
                Warning(
                    f"{setting} names the {alias!r} cache, which is {backend.rsplit('.', 1)[-1]}: "
                    "not shared between processes.",
                    hint="Point it at a shared cache (Redis, Memcached or the database) so the "
                    "JWKS refetch limit and the cleanup subset cycle hold across workers.",
                    id="esi_views.W004",
                )
            )
    return messages
