"""Verifying an EVE SSO access token (a JWT) and reading who it speaks for.

Every rule lives here once; the SSO client, token storage and DRF's bearer
authentication all call ``verify_access_token``. Each failure raises
``InvalidJWTError`` whose ``reason`` names the one rule that was broken.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.views.decorators.debug import sensitive_variables
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, RSAKey

from .conf import esi_settings
from .exceptions import InvalidJWTError
from .jwks import get_signing_key

EVE_AUDIENCE = "EVE Online"
KEY_TYPE_FOR_ALG = {"RS256": RSAKey, "ES256": ECKey}
_SUBJECT = re.compile(r"CHARACTER:EVE:([1-9][0-9]{0,18})")


@dataclass(frozen=True)
class AccessTokenClaims:
    """What a verified access token says. ``claims`` keeps the whole payload."""

    character_id: int
    character_name: str
    owner_hash: str
    scopes: frozenset[str]
    expires_at: datetime
    claims: dict[str, Any] = field(repr=False, compare=False)


MAX_HEADER_LENGTH = 1024  # EVE's headers are under 100 characters
# Sane ranges for the numbers an SSO answer or a JWT carries (EVE: 1199 s, 2**31-ish ids).
MAX_LIFETIME = 366 * 24 * 3600  # seconds; also how far ahead an 'exp' may lie
MAX_ID = 2**63 - 1  # what a BigIntegerField holds


def sane_number(value: Any, low: float, high: float) -> bool:
    """True for an int or float (not a bool) that is finite and within [low, high].

    JSON gives us 1e400 as inf, NaN as nan, and ints of any size: each would crash
    int(), datetime.fromtimestamp() or the database further on.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return low <= value <= high


@sensitive_variables()
def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3 or len(parts[0]) > MAX_HEADER_LENGTH:
        raise InvalidJWTError("malformed", "Access token is not a compact JWS.")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJWTError("malformed", "Access token header is not JSON.") from exc
    if not isinstance(header, dict):
        raise InvalidJWTError("malformed", "Access token header is not a JSON object.")
    return header


@sensitive_variables()
def _verified_payload(token: str) -> dict[str, Any]:
    header = _header(token)
    if "crit" in header:  # EVE never sends one; extensions we do not know mean "reject"
        raise InvalidJWTError("malformed", "Access token header has critical extensions.")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in KEY_TYPE_FOR_ALG:
        raise InvalidJWTError("algorithm", f"Algorithm {alg!r} is not accepted.")
    if not isinstance(kid, str) or not kid:
        raise InvalidJWTError("kid", "Access token names no signing key (kid).")
    key = get_signing_key(kid)
    if key is None:
        raise InvalidJWTError("kid", f"The SSO publishes no signing key {kid!r}.")
    key_alg = key.get("alg")
    if not isinstance(key, KEY_TYPE_FOR_ALG[alg]) or (key_alg and key_alg != alg):
        raise InvalidJWTError("algorithm", f"Key {kid!r} is not an {alg} key.")
    try:
        return jwt.decode(token, key, algorithms=[alg]).claims
    except BadSignatureError:
        # from None: joserfc's frames, which hold the token, stay out of error reports.
        raise InvalidJWTError("signature", "Access token signature does not verify.") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidJWTError("malformed", f"Access token could not be decoded: {exc}.") from None


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scp = claims.get("scp", [])
    if isinstance(scp, str):  # EVE sends a bare string when there is one scope
        scp = [scp]
    if not isinstance(scp, list) or not all(isinstance(s, str) for s in scp):
        raise InvalidJWTError("scopes", "Access token 'scp' is neither a string nor a list.")
    return frozenset(scp)


def _check_time(claims: dict[str, Any], leeway: float) -> datetime:
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise InvalidJWTError("malformed", "Access token has no numeric 'exp'.")
    now = time.time()
    if not sane_number(exp, -math.inf, now + MAX_LIFETIME):
        raise InvalidJWTError("malformed", "Access token 'exp' is not a sane time.")
    if exp + leeway < now:
        raise InvalidJWTError("expired", "Access token has expired.")
    for name in ("iat", "nbf"):  # optional (EVE sends iat), but numbers if present
        if name in claims and not sane_number(claims[name], 0, now + MAX_LIFETIME):
            raise InvalidJWTError("malformed", f"Access token {name!r} is not a sane time.")
    return datetime.fromtimestamp(exp, tz=UTC)


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences or EVE_AUDIENCE not in audiences:
        raise InvalidJWTError(
            "audience",
            f"Access token audience {aud!r} must contain our client id and {EVE_AUDIENCE!r}.",
        )


def _text_claim(claims: dict[str, Any], name: str, reason: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidJWTError(reason, f"Access token has no {name!r}.")
    return value


@sensitive_variables()  # the token, and joserfc's frames below, in error reports
def verify_access_token(
    token: str, *, client_id: str | None = None, leeway: float | None = None
) -> AccessTokenClaims:
    """Check signature, issuer, audience, expiry and subject; return what the token says."""
    if not isinstance(token, str) or not token:
        raise InvalidJWTError("malformed", "No access token given.")
    claims = _verified_payload(token)
    if claims.get("iss") not in esi_settings.SSO_ISSUERS:
        raise InvalidJWTError("issuer", f"Access token issuer {claims.get('iss')!r} is not ours.")
    _check_audience(claims, client_id or esi_settings.SSO_CLIENT_ID)
    expires_at = _check_time(claims, esi_settings.JWT_LEEWAY if leeway is None else leeway)
    sub = claims.get("sub")
    match = _SUBJECT.fullmatch(sub) if isinstance(sub, str) else None
    if match is None or not sane_number(int(match.group(1)), 1, MAX_ID):
        raise InvalidJWTError(
            "subject",
            f"Access token subject {claims.get('sub')!r} is not a character (CHARACTER:EVE:<id>).",
        )
    return AccessTokenClaims(
        character_id=int(match.group(1)),
        character_name=_text_claim(claims, "name", "name"),
        owner_hash=_text_claim(claims, "owner", "owner"),
        scopes=_scopes(claims),
        expires_at=expires_at,
        claims=claims,
    )
