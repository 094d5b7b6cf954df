"""The OAuth side of :class:`~esi_views.testing.FakeEveSSO`: routes, endpoints, faults.

Transport-free on purpose: :class:`SSOProtocol` turns a parsed :class:`Request` into a
:class:`Reply`, so the HTTP plumbing in ``fake_sso`` stays a thin adapter. It owns the
per-request state (codes, refresh tokens, fault queues, call counters) and reads the
server's configuration and characters through FakeEveSSO's public attributes.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlencode, urlsplit

from esi_views.testing import _fake_pages as pages
from esi_views.testing._fake_tokens import normalise_scopes

if TYPE_CHECKING:
    from esi_views.testing.fake_sso import FakeEveSSO

ENDPOINTS = ("metadata", "authorize", "token", "jwks", "revoke")
CODE_LIFETIME = 300
# Faults that replace (or delay) any endpoint's answer.
ANSWER_FAULTS = frozenset(
    {
        "server_error",
        "rate_limited",
        "timeout",
        "invalid_grant",
        "invalid_client",
        "invalid_token",
        "malformed_json",
    }
)
# Faults that shape a successful token answer; only meaningful for the token endpoint.
TOKEN_FAULTS = frozenset(
    {
        "missing_fields",
        "owner_hash_change",
        "wrong_audience",
        "expired_jwt",
        "bad_signature",
        "bare_issuer",
        "odd_fields",
        "odd_claims",
    }
)
_PORTRAIT_PATH = re.compile(r"^/characters/(\d+)/portrait$")


@dataclass(frozen=True)
class _AuthCode:
    character_id: int
    scopes: tuple[str, ...]
    redirect_uri: str
    code_challenge: str
    expires_at: float


@dataclass(frozen=True)
class _Grant:
    """What a refresh token stands for."""

    character_id: int
    scopes: tuple[str, ...]


@dataclass
class Fault:
    name: str
    remaining: int | None  # None: until clear_faults()
    params: dict[str, Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: Message
    fault: Fault | None = None
    body: bytes = b""

    @property
    def params(self) -> dict[str, str]:
        return {**self.query, **self.form}


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), "application/json", headers or {})


def _html(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), "text/html; charset=utf-8")


def _oauth_error(status: int, error: str, description: str) -> Reply:
    headers = {"WWW-Authenticate": 'Basic realm="fake-eve-sso"'} if status == 401 else None
    return json_reply(status, {"error": error, "error_description": description}, headers)


def _redirect(url: str, **params: str) -> Reply:
    separator = "&" if urlsplit(url).query else "?"
    return Reply(302, headers={"Location": f"{url}{separator}{urlencode(params)}"})


def _state(params: dict[str, str]) -> dict[str, str]:
    return {"state": params["state"]} if "state" in params else {}


def s256(verifier: str) -> str:
    """PKCE S256: base64url (no padding) of the SHA-256 of the verifier."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


def validate_fault(fault: str, endpoint: str, times: int | None) -> None:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
    if fault not in ANSWER_FAULTS | TOKEN_FAULTS:
        raise ValueError(f"unknown fault {fault!r}")
    if fault in TOKEN_FAULTS and endpoint != "token":
        raise ValueError(f"fault {fault!r} only applies to the token endpoint")
    if times is not None and times < 1:
        raise ValueError("times must be at least 1 (or None for 'until cleared')")


class SSOProtocol:
    def __init__(self, sso: FakeEveSSO) -> None:
        self.sso = sso
        self.calls: collections.Counter[str] = collections.Counter()
        # Requests being handled right now, and the most ever at once, per endpoint.
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self._codes: dict[str, _AuthCode] = {}
        self._grants: dict[str, _Grant] = {}
        self._faults: dict[str, list[Fault]] = collections.defaultdict(list)

    # -- state the public API manipulates ----------------------------------------------

    def add_fault(self, fault: Fault, endpoint: str) -> None:
        with self._lock:
            self._faults[endpoint].append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_all(self, character_id: int) -> None:
        with self._lock:
            for token, grant in list(self._grants.items()):
                if grant.character_id == character_id:
                    del self._grants[token]

    def reset(self) -> None:
        with self._lock:
            self._codes.clear()
            self._grants.clear()
            self._faults.clear()
            self.calls.clear()  # in place: callers may hold a reference to it
            self.max_in_flight.clear()
            self.max_in_flight.update(self.in_flight)  # requests still running count

    def _take_fault(self, endpoint: str) -> Fault | None:
        # Faults queue up per endpoint; each request uses up one turn of the first.
        with self._lock:
            queue = self._faults.get(endpoint)
            if not queue:
                return None
            fault = queue[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
            return fault

    # -- dispatch ----------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, tuple[str, ...], Callable[[Request], Reply]]:
        routes = {
            "/.well-known/oauth-authorization-server": ("metadata", ("GET",), self._metadata),
            "/v2/oauth/authorize": ("authorize", ("GET",), self._authorize),
            "/v2/oauth/authorize/approve": ("approve", ("GET", "POST"), self._approve),
            "/v2/oauth/token": ("token", ("POST",), self._token),
            "/v2/oauth/revoke": ("revoke", ("POST",), self._revoke),
            "/oauth/jwks": ("jwks", ("GET",), self._jwks),
        }
        if path in routes:
            return routes[path]
        if _PORTRAIT_PATH.match(path):
            return ("portrait", ("GET",), self._portrait)
        return ("not_found", ("GET", "POST"), self._not_found)

    def handle(self, request: Request) -> Reply:
        endpoint, methods, handler = self._route(request.path)
        if request.method not in methods:
            return json_reply(405, {"error": "method_not_allowed"}, {"Allow": ", ".join(methods)})
        with self._lock:
            self.calls[endpoint] += 1
            if endpoint == "token":
                self.calls[f"token:{request.form.get('grant_type', '')}"] += 1
            self.in_flight[endpoint] += 1
            self.max_in_flight[endpoint] = max(
                self.max_in_flight[endpoint], self.in_flight[endpoint]
            )
        try:
            return self._handle(endpoint, handler, request)
        finally:
            with self._lock:
                self.in_flight[endpoint] -= 1

    def _handle(
        self, endpoint: str, handler: Callable[[Request], Reply], request: Request
    ) -> Reply:
        if self.sso.latency > 0:
            time.sleep(self.sso.latency)
        request.fault = self._take_fault(endpoint)
        if request.fault is not None and request.fault.name in ANSWER_FAULTS:
            reply = _fault_reply(request.fault)
            if reply is not None:
                return reply
        return handler(request)

    # -- discovery ---------------------------------------------------------------------

    def _metadata(self, request: Request) -> Reply:
        base = self.sso.base_url
        return json_reply(
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/v2/oauth/authorize",
                "token_endpoint": f"{base}/v2/oauth/token",
                "revocation_endpoint": f"{base}/v2/oauth/revoke",
                "jwks_uri": f"{base}/oauth/jwks",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
            },
        )

    def _jwks(self, request: Request) -> Reply:
        return json_reply(200, self.sso.jwks, {"Cache-Control": "public, max-age=300"})

    # -- authorize ---------------------------------------------------------------------

    def _authorize_problem(self, params: dict[str, str]) -> str | None:
        sso = self.sso
        if params.get("response_type") != "code":
            return "response_type must be 'code'."
        if params.get("client_id") != sso.client_id:
            return f"Unknown client_id {params.get('client_id')!r}."
        if params.get("redirect_uri") != sso.callback_url:
            return (
                f"redirect_uri {params.get('redirect_uri')!r} does not match the registered "
                f"callback URL {sso.callback_url!r}."
            )
        if not params.get("code_challenge"):
            return "code_challenge is missing: PKCE is required."
        if params.get("code_challenge_method") != "S256":
            return "code_challenge_method must be 'S256'."
        return None

    def _authorize(self, request: Request) -> Reply:
        params = request.query
        # A bad request never redirects: the redirect_uri may not be ours to send users to.
        if problem := self._authorize_problem(params):
            return _html(400, pages.error_page(problem))
        selected = self.sso.selected_character
        if selected is None:
            page = pages.picker_page(
                self.sso.base_url, self.sso.client_id, self.sso.characters, params
            )
            return _html(200, page)
        return self._issue_code(params, selected)

    def _approve(self, request: Request) -> Reply:
        params = request.params
        if problem := self._authorize_problem(params):
            return _html(400, pages.error_page(problem))
        if params.get("action") == "cancel":
            return _redirect(
                params["redirect_uri"],
                error="access_denied",
                error_description="The user cancelled the login.",
                **_state(params),
            )
        character_id = params.get("character_id", "")
        known = {c.character_id for c in self.sso.characters}
        if not (character_id.isdigit() and int(character_id) in known):
            return _html(400, pages.error_page(f"Unknown character_id {character_id!r}."))
        return self._issue_code(params, int(character_id))

    def _issue_code(self, params: dict[str, str], character_id: int) -> Reply:
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = _AuthCode(
                character_id=character_id,
                scopes=normalise_scopes(params.get("scope", "")),
                redirect_uri=params["redirect_uri"],
                code_challenge=params["code_challenge"],
                expires_at=time.monotonic() + self.sso.code_lifetime,
            )
        return _redirect(params["redirect_uri"], code=code, **_state(params))

    # -- token and revoke --------------------------------------------------------------

    def _client_error(self, request: Request) -> Reply | None:
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return _oauth_error(401, "invalid_client", "HTTP Basic client auth is required.")
        # RFC 6749 says form-encode before base64; accept clients that do and that don't.
        candidates = {credentials, tuple(unquote_plus(part) for part in credentials)}
        if (self.sso.client_id, self.sso.client_secret) not in candidates:
            return _oauth_error(401, "invalid_client", "Unknown client_id or wrong secret.")
        return None

    def _token(self, request: Request) -> Reply:
        if error := self._client_error(request):
            return error
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            return self._redeem_code(request)
        if grant_type == "refresh_token":
            return self._refresh(request)
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r}.")

    def _redeem_code(self, request: Request) -> Reply:
        form = request.form
        with self._lock:  # popped at once: a code is single use, even if this attempt fails
            code = self._codes.pop(form.get("code", ""), None)
        if code is None:
            problem = "Unknown or already used authorization code."
        elif time.monotonic() > code.expires_at:
            problem = "The authorization code has expired."
        elif form.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
            problem = "redirect_uri does not match the authorize request."
        elif not hmac.compare_digest(s256(form.get("code_verifier", "")), code.code_challenge):
            problem = "code_verifier does not match code_challenge."
        else:
            grant = _Grant(code.character_id, code.scopes)
            return self._token_answer(grant, self._store_grant(grant), request.fault)
        return _oauth_error(400, "invalid_grant", problem)

    def _refresh(self, request: Request) -> Reply:
        old = request.form.get("refresh_token", "")
        with self._lock:
            grant = self._grants.get(old)
            if grant is None:
                return _oauth_error(400, "invalid_grant", "Unknown or revoked refresh token.")
            scopes = normalise_scopes(request.form.get("scope", "")) or grant.scopes
            if not set(scopes) <= set(grant.scopes):
                return _oauth_error(400, "invalid_scope", "A refresh cannot widen the scopes.")
            refresh_token: str | None = old
            if self.sso.refresh_token_mode == "rotate":
                del self._grants[old]
                refresh_token = self._store_grant(grant)
            elif self.sso.refresh_token_mode == "omit":
                refresh_token = None
        narrowed = _Grant(grant.character_id, scopes)
        return self._token_answer(narrowed, refresh_token, request.fault)

    def _store_grant(self, grant: _Grant) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._grants[token] = grant
        return token

    def _token_answer(self, grant: _Grant, refresh: str | None, fault: Fault | None) -> Reply:
        name = fault.name if fault else ""
        by_fault: dict[str, dict[str, Any]] = {
            "wrong_audience": {"audience": ["someone-else", "EVE Online"]},
            "expired_jwt": {"expires_in": -120},
            "bad_signature": {"sign_with_foreign_key": True},
            "bare_issuer": {"issuer": urlsplit(self.sso.base_url).netloc},
            "odd_claims": {"claims": dict(fault.params.get("claims", {}))} if fault else {},
        }
        overrides = by_fault.get(name, {})
        if name == "owner_hash_change":
            with contextlib.suppress(KeyError):  # a character gone after reset(): no change
                self.sso.change_owner(grant.character_id)
        access_token = self.sso.mint_access_token(grant.character_id, grant.scopes, **overrides)
        answer: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": self.sso.access_token_lifetime,
            "token_type": "Bearer",
        }
        if refresh is not None:
            answer["refresh_token"] = refresh
        if fault is not None and name == "missing_fields":
            for key in fault.params.get("fields", ("expires_in", "token_type")):
                answer.pop(key, None)
        if fault is not None and name == "odd_fields":
            # Raw JSON text per field, so that 1e400 or a 400-digit number reach the
            # client exactly as written (json.dumps would write Infinity).
            raw: dict[str, str] = dict(fault.params.get("raw", {}))
            kept = json.dumps({k: v for k, v in answer.items() if k not in raw})
            extra = ", ".join(f"{json.dumps(k)}: {v}" for k, v in raw.items())
            body = kept[:-1] + (", " if kept != "{}" and extra else "") + extra + "}"
            return Reply(200, body.encode(), "application/json")
        return json_reply(200, answer)

    def _revoke(self, request: Request) -> Reply:
        if error := self._client_error(request):
            return error
        with self._lock:  # RFC 7009: an unknown token is not an error
            self._grants.pop(request.form.get("token", ""), None)
        return Reply(200)

    # -- the rest ----------------------------------------------------------------------

    def _portrait(self, request: Request) -> Reply:
        match = _PORTRAIT_PATH.match(request.path)
        wanted = int(match[1]) if match else None
        character = next((c for c in self.sso.characters if c.character_id == wanted), None)
        if character is None:
            return self._not_found(request)
        svg = pages.portrait_svg(character.character_id, character.name)
        return Reply(200, svg.encode(), "image/svg+xml", {"Cache-Control": "max-age=3600"})

    def _not_found(self, request: Request) -> Reply:
        return json_reply(404, {"error": "not_found", "error_description": request.path})


def _fault_reply(fault: Fault) -> Reply | None:
    """The answer an answer-replacing fault gives; None means answer normally."""
    params = fault.params
    if fault.name == "server_error":
        status = int(params.get("status", 500))
        return _html(status, pages.server_error_page(status))
    if fault.name == "rate_limited":
        retry_after = str(params.get("retry_after", 1))
        return json_reply(429, {"error": "rate_limited"}, {"Retry-After": retry_after})
    if fault.name == "timeout":
        time.sleep(float(params.get("seconds", 3)))  # then answer normally, too late
        return None
    if fault.name == "malformed_json":
        return Reply(200, b'{"access_token": "abc"', "application/json")
    status = 401 if fault.name == "invalid_client" else 400
    return _oauth_error(status, fault.name, "Injected fault.")
