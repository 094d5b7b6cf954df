"""One spelling for scopes: whatever the caller wrote becomes a ``frozenset[str]``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

ScopesArg = str | Iterable[str] | None


def normalize_scopes(scopes: ScopesArg) -> frozenset[str]:
    """Accept a space-delimited string, or any iterable of names (each may itself hold spaces).

    ``None`` and ``""`` mean "no scope required".
    """
    if scopes is None:
        return frozenset()
    if isinstance(scopes, str):
        return frozenset(scopes.split())
    if isinstance(scopes, bytes):
        raise TypeError("scopes must be str or an iterable of str, not bytes")
    result: set[str] = set()
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"scope names must be str, got {type(scope).__name__}: {scope!r}")
        result.update(scope.split())
    return frozenset(result)


def scopes_to_string(scopes: ScopesArg) -> str:
    """Sorted and space-joined, the form the SSO's ``scope`` parameter takes."""
    return " ".join(sorted(normalize_scopes(scopes)))


def scopes_digest(scopes: ScopesArg) -> str:
    """A fixed-length fingerprint of a scope set (order and repeats do not matter).

    Stored on tokens so the database itself can refuse a second token of the same user,
    character and scopes (a unique constraint cannot span a many-to-many relation).
    """
    return hashlib.sha256(scopes_to_string(scopes).encode()).hexdigest()
