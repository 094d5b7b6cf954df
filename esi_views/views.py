"""Our own endpoints: the SSO callback, the token selection POST, and a login link."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import flow


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


@never_cache
@require_GET
@_errors_as_pages
def login(request: HttpRequest) -> HttpResponse:
    """Start an SSO flow: ``?scopes=a+b&next=/somewhere/`` (next must stay on this site)."""
    return flow.start_login(request)
