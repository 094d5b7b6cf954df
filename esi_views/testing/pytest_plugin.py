"""pytest fixtures for code that uses esi_views; loaded automatically when installed.

``fake_sso`` gives each test a running fake EVE SSO (real HTTP on 127.0.0.1) with
Django's settings pointed at it and the JWKS cache empty. See "Testing" in the package
documentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from esi_views.models import Token

    from .fake_esi import FakeESI
    from .fake_sso import FakeEveSSO

DEFAULT_CALLBACK_URL = "http://testserver/esi/callback/"


def _callback_url() -> str:
    # Where Django's test client will be sent back to: our callback view if the
    # project mounts esi_views.urls, else the conventional path.
    from django.urls import NoReverseMatch, reverse

    try:
        return "http://testserver" + reverse("esi_views:callback")
    except NoReverseMatch:
        return DEFAULT_CALLBACK_URL


@pytest.fixture(scope="session")
def fake_sso_server() -> Iterator[FakeEveSSO]:
    """One fake EVE SSO for the whole session; prefer the ``fake_sso`` fixture."""
    from .fake_sso import FakeEveSSO

    with FakeEveSSO(callback_url=_callback_url()) as server:
        yield server


@pytest.fixture
def fake_sso(fake_sso_server: FakeEveSSO, settings) -> Iterator[FakeEveSSO]:
    """The fake EVE SSO, reset for this test, with ESI_SSO_* settings pointing at it."""
    from esi_views.jwks import clear_jwks_cache

    fake_sso_server.reset()
    for name, value in fake_sso_server.settings().items():
        setattr(settings, name, value)
    clear_jwks_cache()
    yield fake_sso_server
    clear_jwks_cache()
    fake_sso_server.reset()


@pytest.fixture
def esi_token(fake_sso: FakeEveSSO, db) -> Callable[..., Token]:
    """A factory: ``esi_token(user, character_id=..., scopes=[...])`` -> a stored Token.

    Made through a real code exchange against ``fake_sso``; the character is added to
    the fake SSO if needed (``character_name`` and ``owner_hash`` optional).
    """
    from .logins import create_token

    def make(user: Any = None, **kwargs: Any) -> Token:
        return create_token(fake_sso, user=user, **kwargs)

    return make


@pytest.fixture(scope="session")
def fake_esi_server(fake_sso_server: FakeEveSSO) -> Iterator[FakeESI]:
    """One fake ESI for the whole session (2 s windows); prefer the ``fake_esi`` fixture."""
    from .fake_esi import FakeESI

    with FakeESI(fake_sso_server, window=2.0, limit=150) as server:
        yield server


@pytest.fixture
def fake_esi(fake_esi_server: FakeESI, fake_sso: FakeEveSSO, settings) -> Iterator[FakeESI]:
    """The fake ESI, reset, with ESI_API_URL pointing at it and the ESI client's memory
    (learned groups, shared budgets, cached answers) cleared for this test."""
    from esi_views.esi.testing_support import clear_client_state

    fake_esi_server.reset()
    for name, value in fake_esi_server.settings().items():
        setattr(settings, name, value)
    clear_client_state()
    yield fake_esi_server
    clear_client_state()
    fake_esi_server.reset()
