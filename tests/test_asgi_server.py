"""The async views behind a real ASGI server: uvicorn in a thread of this process (so it
shares the test database, SQLite or PostgreSQL), a real browser's trips done with
requests, against a fake EVE SSO that redirects back to that server."""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client

from esi_views.jwks import clear_jwks_cache
from esi_views.models import Token
from esi_views.testing import FakeEveSSO
from esi_views.testing.logins import create_token
from tests.views_app import SCOPES

uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is in the dev extra")

# Committed rows: the server's threads use their own database connections.
pytestmark = pytest.mark.django_db(transaction=True)

PILOT, ALT = 90004001, 90004002


class Site:
    def __init__(self, url: str, sso: FakeEveSSO) -> None:
        self.url, self.sso = url, sso

    def __call__(self, path: str) -> str:
        return self.url + path


@pytest.fixture
def site(settings) -> Iterator[Site]:
    from django.core.asgi import get_asgi_application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(
            get_asgi_application(), lifespan="off", log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True
    )
    with FakeEveSSO(callback_url=f"{url}/esi/callback/") as sso:
        for name, value in sso.settings().items():
            setattr(settings, name, value)
        clear_jwks_cache()
        sso.add_character(PILOT, "Uvicorn Pilot")
        sso.add_character(ALT, "Uvicorn Alt")
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not server.started:  # no timing assumption: just wait for "started"
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
            yield Site(url, sso)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()
            clear_jwks_cache()
    assert not thread.is_alive()


def _browser() -> requests.Session:
    browser = requests.Session()
    browser.trust_env = False  # no proxy between us and 127.0.0.1
    return browser


def _logged_in_browser(user) -> requests.Session:
    """A browser holding a session of ``user`` (made by Django's client, stored in the db)."""
    client = Client()
    client.force_login(user)
    browser = _browser()
    browser.cookies.set("sessionid", client.cookies["sessionid"].value)
    return browser


@pytest.mark.parametrize("form", ["async_mixin", "async_decorator"])
def test_an_anonymous_login_round_trip(site, form):
    site.sso.select_character(PILOT)
    answer = _browser().get(site(f"/v/{form}/new_token/5/"), timeout=30)
    # view -> SSO -> our callback -> view with the flow key -> JSON
    assert [r.status_code for r in answer.history] == [302, 302, 302]
    assert answer.history[1].url.startswith(site.sso.base_url)
    assert answer.json()["character"] == PILOT and answer.json()["user"] is None
    assert answer.json()["kwargs"] == {"number": 5}


@pytest.mark.parametrize("form", ["async_mixin", "async_decorator"])
def test_a_logged_in_user_picks_a_character_on_the_selection_page(site, form):
    user = get_user_model().objects.create_user(f"uvicorn-{form}")
    create_token(site.sso, user=user, character_id=PILOT, scopes=SCOPES)
    alt = create_token(site.sso, user=user, character_id=ALT, scopes=SCOPES)
    browser = _logged_in_browser(user)
    page = browser.get(site(f"/v/{form}/token/1/"), timeout=30)
    assert page.status_code == 200 and "Uvicorn Alt" in page.text
    form_fields = dict(re.findall(r'name="(csrfmiddlewaretoken|flow)" value="([^"]*)"', page.text))
    chosen = browser.post(
        site("/esi/select/"),
        data={**{k: html.unescape(v) for k, v in form_fields.items()}, "token": alt.pk},
        headers={"Referer": page.url},
        timeout=30,
    )
    assert chosen.status_code == 200, chosen.text[:300]
    assert chosen.json()["character"] == ALT and chosen.json()["user"] == user.pk


def test_tokens_required_and_a_replayed_callback(site):
    user = get_user_model().objects.create_user("uvicorn-tokens")
    create_token(site.sso, user=user, character_id=PILOT, scopes=SCOPES)
    browser = _logged_in_browser(user)
    assert browser.get(site("/v/async_decorator/tokens/1/"), timeout=30).json()["tokens"] == [PILOT]
    site.sso.select_character(ALT)
    answer = browser.get(site("/v/async_mixin/new_tokens/1/"), timeout=30)
    assert answer.json()["tokens"] == [ALT]
    callback = answer.history[2].url
    replayed = browser.get(callback, timeout=30)
    assert replayed.status_code == 400 and "already" in replayed.text
    assert Token.objects.filter(user=user).count() == 2


def test_a_path_with_non_ascii_characters_gets_its_token_back(site):
    site.sso.select_character(PILOT)
    answer = _browser().get(site("/v/async_named/single_use/caf%C3%A9/"), timeout=30)
    assert answer.status_code == 200 and answer.json()["character"] == PILOT
    assert answer.json()["kwargs"] == {"name": "café"}
