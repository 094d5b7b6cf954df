"""What the demo pages show about a token: never the access or refresh token itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from esi_views.access_tokens import verify_access_token
from esi_views.exceptions import EsiError
from esi_views.links import portrait_url
from esi_views.models import Token

# Claims worth showing, in this order; the signature and the token are never shown.
_CLAIMS = (
    "sub",
    "name",
    "owner",
    "scp",
    "aud",
    "iss",
    "iat",
    "exp",
    "jti",
    "kid",
    "azp",
    "tenant",
    "region",
)


def _claim_value(name: str, value: Any) -> str:
    if name in {"iat", "exp"} and isinstance(value, int | float):
        return f"{datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC ({value})"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def verified_claims(token: Token) -> tuple[list[tuple[str, str]], str]:
    """The access token's claims after full verification, or an explanation."""
    try:
        claims = verify_access_token(token.valid_access_token()).claims
    except EsiError as exc:
        return [], f"Could not verify the access token: {exc}"
    return [(n, _claim_value(n, claims[n])) for n in _CLAIMS if n in claims], ""


def describe(token: Token, *, claims: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": token.pk,
        "character_id": token.character_id,
        "name": token.character_name,
        "portrait": portrait_url(token.character_id, 128),
        "scopes": sorted(s.name for s in token.scopes.all()),
        "expires_at": token.expires_at,
        "expired": token.expired,
        "can_refresh": token.can_refresh,
        "user": token.user,
        "created": token.created,
    }
    if claims:
        info["claims"], info["claims_error"] = verified_claims(token)
    return info
