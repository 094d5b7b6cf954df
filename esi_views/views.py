"""Our own endpoints: the SSO callback, the token selection POST, and a login link.

All three are ``login_not_required`` (Django 5.1's ``LoginRequiredMiddleware`` would
otherwise send the EVE login itself to the site's login page); each checks what it
needs itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import flow, links
from .scopes import ScopesArg

# The SSO's one-time code, the OAuth state and our hand-back key.
_SECRET_QUERY_PARAMETERS = ("code", "state", flow.FLOW_PARAM)


def _hide_query_secrets(request: HttpRequest) -> None:
    """Mask the code and state in the request before an unexpected error leaves the view.

    Error reports show the request's URL and GET parameters, which Django's filter
    does not cleanse (it only knows POST parameters and settings).
    """
    query = request.GET.copy()
    found = [name for name in _SECRET_QUERY_PARAMETERS if name in query]
    if not found:
        return
    for name in found:
        query.setlist(name, [SafeExceptionReporterFilter.cleansed_substitute])
    query._mutable = False
    request.GET = query  # type: ignore[assignment]
    request.META["QUERY_STRING"] = query.urlencode(safe="*")


def _errors_as_pages(view: Callable[[HttpRequest], HttpResponse]):
    @functools.wraps(view)
    @sensitive_variables()
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return view(request)
        except flow.FlowError as error:
            return flow.error_response(request, error)
        except Exception:
            _hide_query_secrets(request)
            raise

    return wrapper


@login_not_required
@never_cache
@require_GET
@_errors_as_pages
def callback(request: HttpRequest) -> HttpResponse:
    """Where the EVE SSO sends the browser back (ESI_SSO_CALLBACK_URL)."""
    return flow.complete_callback(request)


@login_not_required
@never_cache
@require_POST
@sensitive_post_parameters()  # the signed flow payload and the chosen token id
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
        return flow.start_sso(
            request, flow.Kind.LOGIN, scopes or "", links.safe_return_url(request, next_url)
        )
    except flow.FlowError as error:
        return flow.error_response(request, error)


@login_not_required
@never_cache
@require_http_methods(["GET", "HEAD", "OPTIONS"])
@_errors_as_pages
def login(request: HttpRequest) -> HttpResponse:
    """Start an SSO flow: ``?scopes=a+b&next=/somewhere/`` (next must stay on this site).

    HEAD and OPTIONS start nothing and write nothing (see ``flow.no_flow_response``).
    """
    if request.method == "OPTIONS":
        response = HttpResponse()
        response["Allow"] = "GET, HEAD, OPTIONS"
        return response
    return flow.start_login(request)
