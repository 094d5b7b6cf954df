"""The EVE SSO v2 protocol, as plain functions: authorize URL, code exchange, refresh, revoke.

Built on authlib's requests client (PKCE S256, HTTP Basic client auth, form bodies)
with our sessions from ``http.py`` (timeouts, retries, User-Agent). Every failure is
one of the errors in ``exceptions.py``; every access token we return was verified by
``access_tokens.verify_access_token``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from django.views.decorators.debug import sensitive_variables

from .access_tokens import MAX_LIFETIME, AccessTokenClaims, sane_number, verify_access_token
from .conf import esi_settings
from .exceptions import (
    EsiError,
    InvalidJWTError,
    MissingSettingError,
    OwnerChangedError,
    SSOError,
    SSOInvalidAnswerError,
    SSOMalformedResponseError,
    SSORejectedError,
    SSOTransientError,
)
from .http import RetryPolicy, get_session, json_answer, status_error, transport_error
from .scopes import ScopesArg, normalize_scopes, scopes_to_string
from .sso_concurrency import token_endpoint_slot

logger = logging.getLogger(__name__)

__all__ = [
    "AccessTokenClaims",
    "AuthorizationRequest",
    "TokenResponse",
    "build_authorization_request",
    "exchange_code",
    "refresh",
    "revoke",
    "verify_access_token",
]


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the user, and what to remember until they come back."""

    url: str = field(repr=False)  # carries the state
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    scopes: frozenset[str]


@dataclass(frozen=True)
class TokenResponse:
    """A token endpoint answer whose access token has been verified."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    claims: AccessTokenClaims

    @property
    def expires_at(self) -> datetime:
        # The JWT's exp, not expires_in: it is signed and needs no clock arithmetic.
        return self.claims.expires_at


def _callback_url() -> str:
    if not esi_settings.SSO_CALLBACK_URL:
        raise MissingSettingError(
            "ESI_SSO_CALLBACK_URL is not set; see 'Settings' in the django-esi-views documentation."
        )
    return esi_settings.SSO_CALLBACK_URL


@sensitive_variables()
def build_authorization_request(
    scopes: ScopesArg = None, *, state: str | None = None
) -> AuthorizationRequest:
    """The SSO authorize URL with a fresh random state and a PKCE S256 challenge."""
    requested = normalize_scopes(scopes)
    state = state or generate_token(43)
    verifier = generate_token(64)  # RFC 7636: 43-128 unreserved characters
    params: dict[str, Any] = {"redirect_uri": _callback_url(), "code_verifier": verifier}
    if requested:
        params["scope"] = scopes_to_string(requested)
    url, state = get_session(RetryPolicy.ONCE).create_authorization_url(
        esi_settings.SSO_AUTHORIZE_URL, state=state, **params
    )
    return AuthorizationRequest(url=url, state=state, code_verifier=verifier, scopes=requested)


def fresh_error(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` without the frames below the caller, to raise; ``cause`` chained frameless.

    Those frames (authlib's, requests', joserfc's) hold codes, verifiers and tokens as
    local variables, which error reports and trackers show, and no
    ``sensitive_variables`` can mark code that is not ours. Raise the result outside
    an ``except`` block, so that nothing is chained to it again.
    """
    error.__cause__ = fresh_error(cause) if cause is not None and cause is not error else None
    error.__context__ = None
    error.__suppress_context__ = True
    return error.with_traceback(None)


@sensitive_variables()
def _raise_for_token_answer(response: requests.Response) -> requests.Response:
    """authlib compliance hook: turn every unusable token answer into our error first."""
    body = json_answer(response, "token answer")
    problem = _token_answer_problem(body)
    if problem:
        refresh_token = body.get("refresh_token")
        raise SSOMalformedResponseError(
            f"The EVE SSO's token answer {problem}.",
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        )
    return response


def _token_answer_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        return "has no access_token"
    expires_in = body.get("expires_in")
    # authlib computes expires_at with int(expires_in) (and int(expires_at) if sent):
    # a string, a bool, 1e400 (inf), NaN or a huge number would crash it or worse.
    if not sane_number(expires_in, 0, MAX_LIFETIME):
        return "has no sane numeric expires_in"
    if body.get("expires_at") is not None and not sane_number(body["expires_at"], 0, 2**40):
        return "has an expires_at that is not a sane time"
    if str(body.get("token_type", "Bearer")).lower() != "bearer":
        return f"has token_type {body['token_type']!r}, not Bearer"
    return None


@sensitive_variables()
def _token_call(policy: RetryPolicy, call: str, **kwargs: Any) -> dict[str, Any]:
    session = get_session(policy)
    for hook in ("access_token_response", "refresh_token_response"):
        if _raise_for_token_answer not in session.compliance_hook[hook]:
            session.register_compliance_hook(hook, _raise_for_token_answer)
    error: BaseException
    try:
        # Bounded across every process: the SSO fails above a handful of concurrent calls.
        with token_endpoint_slot():
            return dict(getattr(session, call)(esi_settings.SSO_TOKEN_URL, **kwargs))
    except EsiError as exc:  # ours, raised by the compliance hook inside authlib's frames
        error = exc
    except requests.RequestException as exc:
        error = transport_error(exc)
    except OAuthError as exc:  # an "error" inside a 2xx answer
        error = SSORejectedError(error=exc.error, description=exc.description)
    except (ValueError, TypeError, OverflowError) as exc:  # authlib choking on an answer
        error = SSOMalformedResponseError(
            f"The EVE SSO's token answer is unusable ({type(exc).__name__})."
        )
    finally:
        session.token = None  # the per-thread session must not hold on to secrets
    raise fresh_error(error)


@sensitive_variables()
def _token_response(answer: dict[str, Any]) -> TokenResponse:
    return TokenResponse(
        access_token=answer["access_token"],
        refresh_token=answer.get("refresh_token") or None,
        claims=verify_access_token(answer["access_token"]),
    )


@sensitive_variables()
def exchange_code(code: str, code_verifier: str) -> TokenResponse:
    """Trade an authorization code for tokens. Sent once: a code is single use.

    Raises ``InvalidGrantError`` for a bad, used or expired code (or a wrong verifier)
    and ``InvalidJWTError`` if the SSO's access token does not verify.
    """
    answer = _token_call(
        RetryPolicy.ONCE,
        "fetch_token",
        grant_type="authorization_code",
        code=code,
        code_verifier=code_verifier,
        redirect_uri=_callback_url(),
    )
    try:
        return _token_response(answer)
    except (InvalidJWTError, SSOError) as exc:
        error = exc  # raised afresh below: the frames under it hold the tokens
    raise fresh_error(error)


@sensitive_variables()
def refresh(
    refresh_token: str, *, scopes: ScopesArg = None, owner_hash: str | None = None
) -> TokenResponse:
    """Use a refresh token. An answer without a new refresh token keeps the old one.

    With ``owner_hash``, a token whose character changed hands raises ``OwnerChangedError``.
    A new access token that fails verification raises ``SSOInvalidAnswerError`` (from the
    ``InvalidJWTError``), which is transient: the stored token is not dead because the
    SSO sent something odd. Any
    transient error after the SSO answered carries the answer's ``refresh_token``, to
    be stored in case the SSO rotated it.
    """
    extra = {"scope": scopes_to_string(scopes)} if normalize_scopes(scopes) else {}
    answer = _token_call(
        RetryPolicy.IDEMPOTENT, "refresh_token", refresh_token=refresh_token, **extra
    )
    new_refresh_token = answer.get("refresh_token") or refresh_token
    # The SSO has answered: if it rotated the refresh token, the old one is gone, so
    # whatever goes wrong from here on must hand the new one back.
    error: SSOTransientError | None = None
    cause: BaseException | None = None
    try:
        response = _token_response({**answer, "refresh_token": new_refresh_token})
    except InvalidJWTError as exc:
        error = SSOInvalidAnswerError(reason=exc.reason, refresh_token=new_refresh_token)
        cause = exc
    except SSOTransientError as exc:
        exc.refresh_token = new_refresh_token  # e.g. the JWKS could not be fetched
        error = exc
    except Exception as exc:
        logger.exception("Could not verify the EVE SSO's refresh answer")
        error = SSOTransientError(
            f"Could not verify the EVE SSO's answer: {exc!r}", refresh_token=new_refresh_token
        )
    if error is not None:
        # Raised afresh: the frames below hold the new tokens as local variables.
        raise fresh_error(error, cause)
    if owner_hash is not None and response.claims.owner_hash != owner_hash:
        raise OwnerChangedError(
            old_owner_hash=owner_hash, new_owner_hash=response.claims.owner_hash
        )
    return response


@sensitive_variables()
def revoke(refresh_token: str) -> None:
    """Revoke a refresh token at the SSO (and with it the access tokens it issued)."""
    session = get_session(RetryPolicy.IDEMPOTENT)
    error: SSOError | None
    try:
        response = session.revoke_token(
            esi_settings.SSO_REVOKE_URL, token=refresh_token, token_type_hint="refresh_token"
        )
    except requests.RequestException as exc:
        error = transport_error(exc)
    else:
        error = status_error(response)
    if error is not None:
        raise fresh_error(error)
