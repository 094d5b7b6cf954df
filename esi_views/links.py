"""URLs the flow, the pages and esi_drf build: login links, portraits, safe return URLs.

Plain functions over the request and settings, no models: esi_drf and templates use
them without importing the web flow.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from .conf import esi_settings
from .scopes import ScopesArg, normalize_scopes, scopes_to_string

__all__ = ["login_url", "portrait_url", "safe_return_url"]


def safe_return_url(request: HttpRequest, url: str | None) -> str:
    """``url`` if it stays on this site, else ``/``."""
    if (
        url
        and url.isprintable()
        and url_has_allowed_host_and_scheme(
            url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return url
    return "/"


def login_url(scopes: ScopesArg, next_url: str = "/") -> str:
    """A URL that starts an SSO flow for ``scopes`` and comes back to ``next_url``."""
    query = {"next": next_url}
    if normalize_scopes(scopes):
        query["scopes"] = scopes_to_string(scopes)
    return f"{reverse('esi_views:login')}?{urlencode(query)}"


def portrait_url(character_id: int, size: int = 64) -> str:
    """The character's portrait (``ESI_CHARACTER_PORTRAIT_URL``)."""
    return esi_settings.CHARACTER_PORTRAIT_URL.format(character_id=character_id, size=size)
