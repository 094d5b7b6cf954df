"""POST re-entry: a view protected while handling a POST is entered by POST again.

When a POST needs a token the user must first choose or fetch from the EVE SSO, its form
fields are kept with the flow (``CallbackRedirect.form_data``: encrypted, size-capped,
no files, never in a URL). When the flow comes back (``?esi_flow=<key>``, a GET), the
browser gets a page that posts back to the view at once with a *fresh* CSRF token and
the flow's key only; the view's request then carries the original fields in
``request.POST``. So CSRF is enforced on the re-entry like on any POST, the fields
never travel through the browser again, and a re-entry works once, for the session that
started the flow. A GET stays a GET.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _

from . import flow
from .conf import esi_settings
from .exceptions import FlowError
from .models import CallbackRedirect, Token
from .scopes import ScopesArg

__all__ = ["REENTRY_FIELD", "capture", "hand_back"]

#: The field the re-entry form posts: the flow's key.
REENTRY_FIELD = "esi_reentry"
_NOT_KEPT = frozenset({"csrfmiddlewaretoken", REENTRY_FIELD})


def capture(request: HttpRequest) -> str:
    """The POST's form fields to keep with a flow (JSON), or ``""`` for any other method.

    Refuses (``FlowError``) uploads and forms over ``ESI_REENTRY_MAX_BYTES``: they cannot
    be carried through a login, and silently dropping them would lose the user's input.
    """
    if request.method != "POST":
        return ""
    _require_csrf_checked(request)
    if request.FILES:
        raise FlowError(
            400,
            _("Files cannot be carried over"),
            _(
                "This form sends files, which cannot be kept while you log in with "
                "EVE Online. Log in first, then send the form again."
            ),
        )
    pairs = [(k, v) for k, values in request.POST.lists() if k not in _NOT_KEPT for v in values]
    if len(urlencode(pairs)) > int(esi_settings.REENTRY_MAX_BYTES):
        raise FlowError(
            413,
            _("Form too large"),
            _(
                "This form is too large to be kept while you log in with EVE Online. "
                "Log in first, then send it again."
            ),
        )
    return json.dumps(pairs) if pairs else json.dumps([])


def _require_csrf_checked(request: HttpRequest) -> None:
    """Only a POST that passed Django's CSRF check is kept or re-entered.

    A ``csrf_exempt`` view (or a site without ``CsrfViewMiddleware``) would otherwise let
    another site start a flow whose re-entry posts the attacker's fields with a valid
    CSRF token once the victim has logged in.
    """
    if not getattr(request, "csrf_processing_done", False):
        raise FlowError(
            403,
            _("Form not verified"),
            _(
                "This form could not be checked against cross-site requests, so it "
                "cannot be kept while you log in with EVE Online. Log in first, then "
                "send it again."
            ),
        )


def _restore(request: HttpRequest, form_data: str) -> None:
    data = QueryDict(mutable=True)
    for key, value in json.loads(form_data):
        data.appendlist(key, value)
    data._mutable = False
    # WSGIRequest/ASGIRequest allow setting it; the stubs type it immutable.
    request.POST = data  # type: ignore[assignment]


def _resubmit_page(request: HttpRequest, record: CallbackRedirect) -> HttpResponse:
    response = TemplateResponse(
        request,
        "esi_views/reentry.html",
        {
            "action": request.get_full_path(),
            "field": REENTRY_FIELD,
            "key": record.state,
        },
    )
    add_never_cache_headers(response)
    return response


def hand_back(request: HttpRequest, kind: str, scopes: ScopesArg) -> Token | HttpResponse | None:
    """The token a finished flow brings back (restoring a kept POST), a page, or None."""
    marker = request.POST.get(REENTRY_FIELD) if request.method == "POST" else None
    found = flow.handed_back(request, kind, scopes)
    if marker is not None:
        _require_csrf_checked(request)
        if found is None or found[1].state != marker:
            raise FlowError(
                403, _("Not your form"), _("This form belongs to another login attempt or session.")
            )
        token, record = found
        # Single use, even for two submissions racing each other.
        if not CallbackRedirect.objects.filter(pk=record.pk, method="POST").update(method="GET"):
            raise FlowError(400, _("Already sent"), _("This form was already sent once."))
        _restore(request, record.form_data)
        CallbackRedirect.objects.filter(pk=record.pk).update(form_data="")
        return token
    if found is None:
        return None
    token, record = found
    if record.method == "POST":  # not re-entered yet: only the re-entry form may
        return _resubmit_page(request, record)
    return token
