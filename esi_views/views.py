"""Our own endpoints: the SSO callback, the token selection POST, and a login link."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import flow
from .scopes import ScopesArg


def _errors_as_pages(view: Callable[[HttpRequest], HttpResponse]):
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return view(request)
        except flow.FlowError as error:
            return flow.error_response(request, error)

    return wrapper


@never_cache
@require_GET
@_errors_as_pages
def callback(request: HttpRequest) -> HttpResponse:
    """Where the EVE SSO sends the browser back (ESI_SSO_CALLBACK_URL)."""
    return flow.complete_callback(request)


@never_cache
@require_POST
@_errors_as_pages
def select(request: HttpRequest) -> HttpResponse:
    """The token selection form's target (CSRF-protected like any POST)."""
    return flow.complete_selection(request)


def sso_redirect(
    request: HttpRequest, scopes: ScopesArg = None, return_to: str | None = None
) -> HttpResponse:
    """django-esi's helper: send the user to the EVE SSO for ``scopes``, then back.

    The new token is stored for the logged-in user (as a login link does), and the
    browser returns to ``return_to`` (a URL or URL name; this page if not given).
    """
    next_url = resolve_url(return_to) if return_to else request.get_full_path()
    try:
        return flow.start_sso(request, flow.Kind.LOGIN, scopes or "",
                              flow.safe_return_url(request, next_url))
    except flow.FlowError as error:
        return flow.error_response(request, error)


@never_cache
@require_GET
@_errors_as_pages
def login(request: HttpRequest) -> HttpResponse:
    """Start an SSO flow: ``?scopes=a+b&next=/somewhere/`` (next must stay on this site)."""
    return flow.start_login(request)
