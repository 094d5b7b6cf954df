"""Users and clients for the DRF tests."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

ALICE_MAIN, ALICE_ALT, BOB_MAIN = 90003001, 90003002, 90003101


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bearer(fake_sso):
    """``bearer(character_id, scopes, **overrides)`` -> headers for the test client."""

    def make(character_id: int, scopes=(), **overrides) -> dict[str, str]:
        token = fake_sso.mint_access_token(character_id, scopes, **overrides)
        return {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    return make
