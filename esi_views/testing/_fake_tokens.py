"""Signing keys and access-token minting for :class:`~esi_views.testing.FakeEveSSO`.

Kept apart from the HTTP server so the JWT shape (which must match EVE's real tokens,
because our verifier checks every claim) lives in one small, readable place.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters, RSAKey

ALGORITHMS = ("RS256", "ES256")
EVE_AUDIENCE = "EVE Online"


@dataclass(frozen=True)
class SigningKeys:
    """One RSA-2048 key (RS256) and one P-256 key (ES256), as EVE publishes both."""

    rs256: RSAKey
    es256: ECKey

    @classmethod
    def generate(cls) -> SigningKeys:
        # A fresh suffix per generation gives rotated keys new kids, like EVE's rotation.
        tag = secrets.token_hex(4)
        rs256 = _params("RS256", f"JWT-Signature-Key-{tag}")
        es256 = _params("ES256", f"JWT-Signature-Key-ES-{tag}")
        return cls(
            rs256=RSAKey.generate_key(2048, parameters=rs256),
            es256=ECKey.generate_key("P-256", parameters=es256),
        )

    def key_for(self, alg: str) -> RSAKey | ECKey:
        if alg == "RS256":
            return self.rs256
        if alg == "ES256":
            return self.es256
        raise ValueError(f"alg must be one of {ALGORITHMS}, not {alg!r}")

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS document EVE serves (including its odd ``SkipUnresolvedJsonWebKeys``)."""
        return {
            "keys": [self.rs256.as_dict(private=False), self.es256.as_dict(private=False)],
            "SkipUnresolvedJsonWebKeys": True,
        }


def _params(alg: str, kid: str) -> KeyParameters:
    return {"kid": kid, "alg": alg, "use": "sig"}


# Key generation costs ~100 ms; generating once per process keeps test suites fast.
_cache: dict[str, SigningKeys] = {}
_cache_lock = threading.Lock()


def _cached(name: str) -> SigningKeys:
    with _cache_lock:
        if name not in _cache:
            _cache[name] = SigningKeys.generate()
        return _cache[name]


def shared_keys() -> SigningKeys:
    """The process-wide keys every new FakeEveSSO starts with."""
    return _cached("shared")


def foreign_keys() -> SigningKeys:
    """Keys that are never published: signing with them makes a bad signature."""
    return _cached("foreign")


def normalise_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """A space-delimited string or an iterable -> a de-duplicated tuple, order kept."""
    items = scopes.split() if isinstance(scopes, str) else scopes
    return tuple(dict.fromkeys(items))


def access_token_claims(
    *,
    character_id: int,
    name: str,
    owner_hash: str,
    scopes: tuple[str, ...],
    client_id: str,
    audience: str | list[str] | None,
    issuer: str,
    expires_in: int,
    kid: str,
    sub: str | None = None,
) -> dict[str, Any]:
    """The claims of an EVE SSO v2 access token, in EVE's own shape."""
    now = int(time.time())
    claims: dict[str, Any] = {}
    if scopes:
        # EVE sends a bare string when exactly one scope was granted.
        claims["scp"] = scopes[0] if len(scopes) == 1 else list(scopes)
    claims.update(
        {
            "jti": str(uuid.uuid4()),
            "kid": kid,
            "sub": sub if sub is not None else f"CHARACTER:EVE:{character_id}",
            "azp": client_id,
            "tenant": "tranquility",
            "tier": "live",
            "region": "world",
            "aud": audience if audience is not None else [client_id, EVE_AUDIENCE],
            "name": name,
            "owner": owner_hash,
            "exp": now + expires_in,
            "iat": now,
            "iss": issuer,
        }
    )
    return claims


def sign(claims: dict[str, Any], key: RSAKey | ECKey, *, alg: str, kid: str) -> str:
    """Sign ``claims``; ``kid`` goes in the header even when ``key`` is a foreign one."""
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])
