"""The one pooled ``requests.Session`` per process that talks to ESI, and its headers.

Shared by every thread: requests' connection pool is thread-safe, and the session keeps
no per-call state (cookies are refused, headers are passed per request). It is rebuilt
after a fork and when our settings change.
"""

from __future__ import annotations

import os
import threading
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import __version__
from ..conf import esi_settings

_lock = threading.Lock()
_session: tuple[tuple, requests.Session] | None = None


def user_agent() -> str:
    """What CCP asks for: who we are, how to reach the operator, and the library."""
    app = esi_settings.APP_NAME or "django-esi-views-app"
    contact = esi_settings.USER_CONTACT_EMAIL or "no contact set"
    client = esi_settings.SSO_CLIENT_ID
    details = f"{contact}; eve-client:{client}" if client else contact
    return (
        f"{app} ({details}) django-esi-views/{__version__} "
        "(+https://pypi.org/project/django-esi-views/)"
    )


def base_headers() -> dict[str, str]:
    return {
        "User-Agent": user_agent(),
        "X-Compatibility-Date": str(esi_settings.COMPATIBILITY_DATE),
        "Accept": "application/json",
    }


def _build() -> requests.Session:
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    # Only connection failures are retried here: the request never reached ESI, so it
    # cost nothing. Status retries would bypass the shared budget.
    retry = Retry(
        total=2,
        connect=2,
        read=0,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=0.1,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def get_session() -> requests.Session:
    global _session
    key = (os.getpid(), esi_settings.API_URL)
    current = _session
    if current is not None and current[0] == key:
        return current[1]
    with _lock:
        if _session is None or _session[0] != key:
            _session = (key, _build())
        return _session[1]


def url_for(path: str) -> str:
    return esi_settings.API_URL.rstrip("/") + path
