"""A browser's trip through the flow with Django's test clients and the fake SSO."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import requests
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

FLOW_KEY = re.compile(r"esi_flow=[^&]+")
FORM = re.compile(r"/v/[a-z_]+/")


def _blocking(name: str):
    def method(self, *args, **kwargs):
        return async_to_sync(getattr(self._client, name))(*args, **kwargs)

    method.__name__ = name
    return method


class SyncAsyncClient:
    """Django's AsyncClient (requests through the ASGI handler) with the test Client's
    blocking methods, so one scenario drives both a WSGI and an ASGI request path."""

    def __init__(self, **defaults) -> None:
        self._client = AsyncClient(**defaults)

    def __getattr__(self, name):  # cookies, force_login, session, ...
        return getattr(self._client, name)

    get, post, put, patch, delete, head, options = map(
        _blocking, ["get", "post", "put", "patch", "delete", "head", "options"]
    )


def client_for(form: str, **defaults):
    """A test client for views of ``form``: AsyncClient for the async ones."""
    return SyncAsyncClient(**defaults) if form.startswith("async") else Client(**defaults)


def to_sso_and_back(client, response, fake_sso, character_id: int | None = None):
    """Follow our redirect to the fake SSO (which approves) and its redirect to our callback."""
    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    assert location.startswith(fake_sso.base_url + "/v2/oauth/authorize"), location
    if character_id is not None:
        fake_sso.select_character(character_id)
    answer = requests.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:500]
    callback = urlsplit(answer.headers["Location"])
    return client.get(f"{callback.path}?{callback.query}")


def follow(client, response):
    """Follow one of our own redirects."""
    assert response.status_code == 302, response.content[:500]
    return client.get(response["Location"])


def state_of(response) -> str:
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def trace_entry(response) -> tuple:
    """What must be equal between mixin and decorator: status, where to, what token."""
    location = response.get("Location", "")
    if location.startswith("http://127.0.0.1"):
        location = "<sso>"
    location = FLOW_KEY.sub("esi_flow=<key>", location)
    location = FORM.sub("/v/<form>/", location)
    body = response.json() if response.get("Content-Type") == "application/json" else None
    if body:
        # Row ids differ between runs; the character, and whether there is a user, must not.
        body.pop("token", None)
        body["user"] = body.get("user") is not None
    return response.status_code, location, body
