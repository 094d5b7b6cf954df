"""A browser's trip through the flow with Django's test client and the fake SSO."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import requests

FLOW_KEY = re.compile(r"esi_flow=[^&]+")


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
    for form in ("mixin", "decorator"):
        location = location.replace(f"/v/{form}/", "/v/<form>/")
    body = response.json() if response.get("Content-Type") == "application/json" else None
    if body:
        # Row ids differ between runs; the character, and whether there is a user, must not.
        body.pop("token", None)
        body["user"] = body.get("user") is not None
    return response.status_code, location, body
