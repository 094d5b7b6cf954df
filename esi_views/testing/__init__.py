"""Test helpers: a fake EVE SSO server (and, in ``pytest_plugin``, fixtures).

Import-light on purpose: the pytest plugin imports this package at start-up, before
Django settings exist, so ``FakeEveSSO`` is loaded only when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esi_views.testing.fake_esi import FakeESI, FakeRoute
    from esi_views.testing.fake_sso import FakeCharacter, FakeEveSSO

__all__ = ["FakeCharacter", "FakeESI", "FakeEveSSO", "FakeRoute"]


def __getattr__(name: str) -> Any:
    if name in ("FakeESI", "FakeRoute"):
        from esi_views.testing import fake_esi

        return getattr(fake_esi, name)
    if name in __all__:
        from esi_views.testing import fake_sso

        return getattr(fake_sso, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
