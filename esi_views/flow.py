"""The one token flow behind the mixins, the decorators and esi_drf.

A protected view asks for a token of some *kind* (``token``, ``tokens``,
``single_use``) with some scopes. It either gets one handed back (``handed_back_token``),
or the user is sent to choose one of theirs (``render_selection``), or to the EVE SSO
(``start_sso``). The SSO comes back to ``complete_callback``, a choice comes back to
``complete_selection``; both end in a redirect to the protected view with
``?esi_flow=<key>``, which hands the token over.

Every step is bound to the session that started it: a flow key from another session,
a token of another user, a selection payload of another session are refused.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.crypto import constant_time_compare, get_random_string, salted_hmac
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from . import logins, sso
from .conf import esi_settings
from .exceptions import (
    FlowError,
    InvalidJWTError,
    SSOConfigurationError,
    SSOError,
    SSOMalformedResponseError,
    SSOTransientError,
    TokenDeadError,
)
from .links import portrait_url, safe_return_url
from .models import CallbackRedirect, Token, hash_session_key
from .scopes import ScopesArg, normalize_scopes, scopes_to_string

logger = logging.getLogger(__name__)

Kind = CallbackRedirect.Kind
FLOW_PARAM = "esi_flow"
# What our flow keys look like (authlib's state, get_random_string): anything else is
# refused before it reaches the database (PostgreSQL rejects NUL bytes with an error).
_FLOW_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SELECTION_SALT = "esi_views.flow.selection"
# The selection payload is signed, not encrypted: it names its session by a keyed hash
# under its own salt (not the stored session_hash, not the key), which nobody can reverse.
_SELECTION_SESSION_SALT = "esi_views.flow.selection.session"


# Retry-After of a callback answered 503 when the SSO did not say (as esi_drf's 503).
SSO_OUTAGE_RETRY_AFTER = 30


def error_response(request: HttpRequest, error: FlowError) -> HttpResponse:
    context = {
        "title": error.title,
        "message": error.message,
        "status": error.status,
        "retry_url": error.retry_url,
    }
    response = TemplateResponse(request, "esi_views/error.html", context, status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


# -- helpers ---------------------------------------------------------------------------------


def _session_key(request: HttpRequest, *, create: bool = False) -> str | None:
    """The key of this request's session, never an unchecked cookie value.

    Until a session is loaded, ``session_key`` is whatever cookie the browser sent;
    loading it drops a key that names no session (a made-up or expired cookie), so
    nobody can bind a flow to a key of their choosing (session fixation).
    """
    session = request.session
    session.keys()  # loads the session
    if session.session_key is None and create:
        # Anonymous visitors need a session to bind the flow to; mark it modified so the
        # session middleware sends the cookie.
        session.save()
        session.modified = True
    return session.session_key


def _session_hash(request: HttpRequest, *, create: bool = False) -> str | None:
    """``hash_session_key`` of this request's session key: what flows are stored under."""
    key = _session_key(request, create=create)
    return hash_session_key(key) if key else None


def _selection_binding(session_key: str | None) -> str:
    if not session_key:
        return ""
    return salted_hmac(_SELECTION_SESSION_SALT, session_key, algorithm="sha256").hexdigest()


def _without_flow_param(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != FLOW_PARAM]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _with_flow_param(url: str, key: str) -> str:
    parts = urlsplit(_without_flow_param(url))
    query = [*parse_qsl(parts.query, keep_blank_values=True), (FLOW_PARAM, key)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _fresh(queryset):
    max_age = timedelta(seconds=esi_settings.CALLBACK_MAX_AGE)
    return queryset.filter(created__gte=timezone.now() - max_age)


def _user_id(request: HttpRequest) -> int | None:
    user = getattr(request, "user", AnonymousUser())
    return user.pk if user.is_authenticated else None


# -- hand-back ------------------------------------------------------------------------------


@sensitive_variables()  # the hand-back key and the session key
def handed_back(
    request: HttpRequest, kind: str, scopes: ScopesArg
) -> tuple[Token, CallbackRedirect] | None:
    """The token a finished flow of this session brought back to this very view, and the flow.

    Anything that does not fit (another session, another view, another kind of flow,
    another user, too few scopes, too old, no longer valid) is ignored: the view then
    goes through the flow again.
    """
    key = request.GET.get(FLOW_PARAM, "")
    if not _FLOW_KEY.fullmatch(key):
        return None
    session_hash = _session_hash(request)
    if not session_hash:
        return None
    record = (
        _fresh(CallbackRedirect.objects.select_related("token"))
        .filter(state=key, session_hash=session_hash, kind=kind, token__isnull=False)
        .first()
    )
    # return_url is escaped (get_full_path()), request.path is not.
    if record is None or unquote(urlsplit(record.return_url).path) != request.path:
        return None
    token = record.token
    if token.user_id is not None and token.user_id != _user_id(request):
        return None
    if not normalize_scopes(scopes) <= set(token.scopes.values_list("name", flat=True)):
        return None
    if token.expired:
        try:
            token.valid_access_token()
        except (SSOError, TokenDeadError):
            return None
    return token, record


@sensitive_variables()  # session keys, state, code, verifier, tokens
def handed_back_token(request: HttpRequest, kind: str, scopes: ScopesArg) -> Token | None:
    """The token of :func:`handed_back`, if any."""
    found = handed_back(request, kind, scopes)
    return found[0] if found else None


# -- what a flow costs: which requests may start one, and how many one session keeps ---------

# A browser starts a flow with a page load (GET) or a form (POST, CSRF-checked). HEAD
# (crawlers, link checkers), OPTIONS (CORS preflights), TRACE and the rest never do:
# they would write a session and a flow row for nothing.
FLOW_METHODS = frozenset({"GET", "POST"})


def may_start_flow(request: HttpRequest) -> bool:
    return request.method in FLOW_METHODS


def no_flow_response(request: HttpRequest) -> HttpResponse:
    """The answer where a GET would start a flow but this method must not.

    HEAD: an empty 200 (the page is there; a browser's GET will go to the EVE SSO).
    Anything else: 405, allowing GET (and HEAD, OPTIONS, POST).
    """
    if request.method == "HEAD":
        response = HttpResponse(status=200)
    else:
        response = HttpResponse(status=405)
        response["Allow"] = "GET, HEAD, OPTIONS, POST"
    add_never_cache_headers(response)
    return response


def _remember_flow(session_hash: str, **fields: Any) -> CallbackRedirect:
    """Store a flow of this session; beyond ESI_MAX_FLOWS_PER_SESSION the oldest go."""
    record = CallbackRedirect.objects.create(session_hash=session_hash, **fields)
    keep = max(1, int(esi_settings.MAX_FLOWS_PER_SESSION))
    older = list(
        CallbackRedirect.objects.filter(session_hash=session_hash)
        .order_by("-created", "-pk")
        .values_list("pk", flat=True)[keep:]
    )
    if older:
        CallbackRedirect.objects.filter(pk__in=older).delete()
    return record


# -- to the SSO and back -------------------------------------------------------------------


@sensitive_variables()
def start_sso(
    request: HttpRequest,
    kind: str,
    scopes: ScopesArg,
    return_url: str | None = None,
    *,
    form_data: str = "",
) -> HttpResponse:
    """Remember a new flow for this session and send the browser to the EVE SSO.

    ``form_data`` (``reentry.capture()``): the view was reached by POST and is re-entered
    by POST with these fields. Only for a GET or POST; other methods get
    ``no_flow_response()`` and write nothing.
    """
    if not may_start_flow(request):
        return no_flow_response(request)
    authorization = sso.build_authorization_request(scopes)
    return_url = _without_flow_param(return_url or request.get_full_path())
    session_hash = _session_hash(request, create=True)
    if session_hash is None:  # save() always sets a key; a session backend that did not
        raise FlowError(500, _("Session unavailable"), _("This site could not start a session."))
    _remember_flow(
        session_hash,
        state=authorization.state,
        kind=kind,
        code_verifier=authorization.code_verifier,
        requested_scopes=scopes_to_string(authorization.scopes),
        return_url=safe_return_url(request, return_url),
        method="POST" if form_data else "GET",
        form_data=form_data,
    )
    return HttpResponseRedirect(authorization.url)


@sensitive_variables()
def _flow_for_callback(request: HttpRequest) -> CallbackRedirect:
    session_hash = _session_hash(request)
    if not session_hash:
        raise FlowError(
            400,
            _("Session missing"),
            _(
                "Your browser did not send a session cookie with the EVE SSO's answer. "
                "Enable cookies for this site and try again."
            ),
        )
    state, code = request.GET.get("state"), request.GET.get("code")
    if not state:
        raise FlowError(400, _("Incomplete answer"), _("The EVE SSO's answer carries no state."))
    if not _FLOW_KEY.fullmatch(state):
        raise FlowError(400, _("Unknown login attempt"), _("This login attempt is unknown."))
    record = CallbackRedirect.objects.filter(state=state).first()
    # Only flows sent to the SSO have a PKCE verifier (not selections, not kept forms).
    if record is None or not record.code_verifier:
        raise FlowError(
            400,
            _("Unknown login attempt"),
            _("This login attempt is unknown or was already used. Start again."),
        )
    if not constant_time_compare(record.session_hash, session_hash):
        raise FlowError(
            403,
            _("Not your login attempt"),
            _("This login attempt was started in another browser session."),
        )
    if record.token_id is not None:
        raise FlowError(400, _("Already used"), _("This login attempt was already completed."))
    max_age = timedelta(seconds=esi_settings.CALLBACK_MAX_AGE)
    if record.created < timezone.now() - max_age:
        record.delete()
        raise FlowError(400, _("Login attempt expired"), _("The login took too long. Start again."))
    if "error" in request.GET:
        record.delete()
        declined = request.GET["error"] == "access_denied"
        raise FlowError(
            403,
            _("Login cancelled"),
            _("The EVE SSO did not grant access (you declined).")
            if declined
            else _("The EVE SSO did not grant access."),
        )
    if not code:
        raise FlowError(400, _("Incomplete answer"), _("The EVE SSO's answer carries no code."))
    return record


@sensitive_variables()
def complete_callback(request: HttpRequest) -> HttpResponse:
    """The SSO's redirect back to us: exchange the code, store the token, hand it back."""
    record = _flow_for_callback(request)
    try:
        answer = sso.exchange_code(request.GET["code"], record.code_verifier)
    except InvalidJWTError as exc:
        logger.warning("SSO callback: access token rejected: %s", exc)
        if exc.reason == "malformed":  # an odd answer, like any other malformed one
            raise FlowError(
                400,
                _("EVE SSO unavailable"),
                _("The EVE SSO's answer was malformed. Try again shortly."),
            ) from exc
        raise FlowError(
            403, _("Login rejected"), _("The EVE SSO's token failed verification.")
        ) from exc
    except TokenDeadError as exc:
        raise FlowError(
            400,
            _("Login failed"),
            _("The EVE SSO refused the login code (it may have been used already). Start again."),
        ) from exc
    except SSOMalformedResponseError as exc:
        # An answer we cannot use (odd numbers, not JSON): refused like any bad input.
        logger.warning("SSO callback: unusable answer: %s", exc)
        raise FlowError(
            400,
            _("EVE SSO unavailable"),
            _("The EVE SSO's answer was malformed. Try again shortly."),
        ) from exc
    except SSOTransientError as exc:
        # Their outage, not the user's mistake: 503 with Retry-After, and a way back in.
        wait = exc.retry_after
        retry_after = max(1, math.ceil(wait)) if wait else SSO_OUTAGE_RETRY_AFTER
        logger.warning("SSO callback: SSO unavailable: %s", exc)
        raise FlowError(
            503,
            _("EVE SSO unavailable"),
            _("The EVE SSO could not complete the login right now. Please try again in a minute."),
            retry_after=retry_after,
            retry_url=safe_return_url(request, record.return_url),
        ) from exc
    except SSOConfigurationError as exc:
        # Our settings are wrong (client id/secret, a missing setting): every login fails
        # until someone fixes them, so this is a server error for the logs and alerts.
        logger.error(
            "SSO callback: the EVE SSO configuration of this site is wrong "
            "(%s: %s); no login can succeed until it is fixed.",
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        raise FlowError(
            500,
            _("Login unavailable"),
            _(
                "This site's EVE SSO setup is broken, so logins cannot work right now. "
                "Please tell the site's administrators."
            ),
        ) from exc
    except SSOError as exc:
        logger.error("SSO callback: %s", exc)
        raise FlowError(400, _("Login failed"), _("The EVE SSO refused the login.")) from exc
    requested = normalize_scopes(record.requested_scopes)
    if not requested <= answer.claims.scopes:
        raise FlowError(
            403,
            _("Missing permissions"),
            _("The EVE SSO granted fewer scopes than this page needs: %(scopes)s.")
            % {"scopes": ", ".join(sorted(requested - answer.claims.scopes))},
        )
    # Single-use tokens belong to no user, so they are never listed or selectable.
    owner = None if record.kind == Kind.SINGLE_USE else getattr(request, "user", None)
    owner = owner if owner is not None and owner.is_authenticated else None
    record.token = logins.store_token(request, record, answer, owner)
    # The OAuth state travelled in the SSO's URLs: it is spent here, and the key that
    # hands the token over (our redirect, the re-entry form) is a fresh one.
    record.state = get_random_string(43)
    record.save(update_fields=["state"])
    if record.kind == Kind.LOGIN:
        # Nothing picks a login's token up: the next page reads the account's tokens.
        return HttpResponseRedirect(safe_return_url(request, record.return_url))
    return HttpResponseRedirect(
        _with_flow_param(safe_return_url(request, record.return_url), record.state)
    )


# -- choosing one of your tokens ------------------------------------------------------------------


@sensitive_variables()
def render_selection(
    request: HttpRequest,
    kind: str,
    scopes: ScopesArg,
    tokens: list[Token],
    template_name: str = "esi_views/select_token.html",
    *,
    form_data: str = "",
) -> TemplateResponse:
    """The page on which a user picks one of ``tokens`` (or adds a character).

    ``form_data``: the view was reached by POST; the fields wait, encrypted, in a flow
    record named in the signed payload until the choice comes back.
    """
    payload = {
        "k": kind,
        "s": scopes_to_string(scopes),
        "r": _without_flow_param(request.get_full_path()),
        "sb": _selection_binding(_session_key(request)),
    }
    if form_data:
        session_hash = _session_hash(request)
        if session_hash is None:  # nothing to bind the waiting fields to
            raise FlowError(
                400,
                _("Session missing"),
                _(
                    "Your browser sent no session cookie. Enable cookies for this site "
                    "and try again."
                ),
            )
        payload["p"] = _remember_flow(
            session_hash,
            state=get_random_string(43),
            kind=kind,
            requested_scopes=scopes_to_string(scopes),
            return_url=safe_return_url(request, payload["r"]),
            method="POST",
            form_data=form_data,
        ).state
    context = {
        # Plain values: the template renders 100 characters without a query or a loop
        # over each token's scopes.
        "characters": [
            {
                "token_id": token.pk,
                "character_id": token.character_id,
                "name": token.character_name,
                "portrait": portrait_url(token.character_id),
                "scopes": ", ".join(sorted(s.name for s in token.scopes.all())) or _("no scopes"),
            }
            for token in tokens
        ],
        "flow": signing.dumps(payload, salt=_SELECTION_SALT, compress=True),
        "scopes": sorted(normalize_scopes(scopes)),
        "select_url": reverse("esi_views:select"),
    }
    return TemplateResponse(request, template_name, context)


@sensitive_variables()
def _selection_payload(request: HttpRequest) -> dict[str, str]:
    max_age = max(3600, esi_settings.CALLBACK_MAX_AGE)
    try:
        payload = signing.loads(request.POST.get("flow", ""), salt=_SELECTION_SALT, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise FlowError(400, _("Page expired"), _("This page is too old. Reload it.")) from exc
    except signing.BadSignature as exc:
        raise FlowError(400, _("Invalid request"), _("The selection form was altered.")) from exc
    binding = _selection_binding(_session_key(request))
    if not (
        binding
        and isinstance(payload, dict)
        and isinstance(payload.get("sb"), str)
        and constant_time_compare(payload["sb"], binding)
    ):
        raise FlowError(403, _("Not your selection"), _("This page belongs to another session."))
    return payload


@sensitive_variables()
def complete_selection(request: HttpRequest) -> HttpResponse:
    """The POST of the selection page: hand the chosen token back, or go to the SSO."""
    user_id = _user_id(request)
    if user_id is None:
        raise FlowError(403, _("Log in first"), _("Only logged-in users can choose a token."))
    payload = _selection_payload(request)  # bound to this session, so there is one
    session_hash = _session_hash(request)
    if session_hash is None:
        raise FlowError(403, _("Not your selection"), _("This page belongs to another session."))
    kind, scopes = payload["k"], normalize_scopes(payload["s"])
    return_url = safe_return_url(request, payload["r"])
    kept = None
    if payload.get("p"):
        kept = (
            _fresh(CallbackRedirect.objects)
            .filter(
                state=payload["p"],
                session_hash=_session_hash(request),
                token__isnull=True,
                method="POST",
            )
            .first()
        )
        if kept is None:
            raise FlowError(400, _("Page expired"), _("This page is too old. Reload it."))
    if request.POST.get("action") == "add":
        form_data = kept.form_data if kept else ""
        if kept:
            kept.delete()
        return start_sso(request, kind, scopes, return_url, form_data=form_data)
    raw_id = request.POST.get("token", "")
    if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 19):  # a bigint
        raise FlowError(400, _("Invalid choice"), _("Choose one of the characters listed."))
    token = (
        Token.objects.filter(user_id=user_id, pk=int(raw_id))
        .require_scopes(scopes)
        .require_valid()
        .first()
    )
    if token is None:
        raise FlowError(
            403,
            _("Not available"),
            _("That token is not one of yours with the permissions this page needs."),
        )
    if kept is not None:
        kept.token = token
        kept.save(update_fields=["token"])
        return HttpResponseRedirect(_with_flow_param(return_url, kept.state))
    record = _remember_flow(
        session_hash,
        state=get_random_string(43),
        kind=kind,
        requested_scopes=scopes_to_string(scopes),
        return_url=return_url,
        token=token,
    )
    return HttpResponseRedirect(_with_flow_param(return_url, record.state))


# -- a login link (esi_views:login; the URLs themselves: esi_views.links) ---------------------


def start_login(request: HttpRequest) -> HttpResponse:
    # "scopes" may repeat (the characters page's checkboxes) or be space-delimited.
    scopes = normalize_scopes(" ".join(request.GET.getlist("scopes")))
    scopes = scopes or normalize_scopes(esi_settings.LOGIN_SCOPES)
    if any(len(s) > 100 or not s.isprintable() for s in scopes) or len(scopes) > 100:
        raise FlowError(400, _("Invalid scopes"), _("The scopes asked for are not valid."))
    next_url = request.GET.get("next")
    if not next_url or safe_return_url(request, next_url) != next_url:
        # No next, or one off this site: where a login goes by default.
        from .account_views import default_redirect

        next_url = default_redirect("LOGIN_REDIRECT_URL")
    return start_sso(request, Kind.LOGIN, scopes, next_url)
