"""The fake ESI itself: buckets, headers, tokens, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

SKILLS = "esi-skills.read_skills.v1"


def get(fake_esi, path, token=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(fake_esi.base_url + path, headers=headers, timeout=5)


def test_floating_window_costs_and_headers(fake_esi_server):
    fake_esi_server.reset()
    fake_esi_server.set_limit("status", 4, window=1)
    answers = [get(fake_esi_server, "/status") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-Ratelimit-Limit"] == "4/1s"
    assert answers[1].headers["X-Ratelimit-Remaining"] == "0"
    assert answers[1].headers["X-Ratelimit-Used"] == "2"
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 2
    time.sleep(1.1)  # the tokens float back one window later
    assert get(fake_esi_server, "/status").status_code == 200
    fake_esi_server.reset()


def test_etag_gives_304(fake_esi_server):
    fake_esi_server.reset()
    first = get(fake_esi_server, "/status")
    again = get(fake_esi_server, "/status", **{"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["X-Ratelimit-Used"] == "1"
    assert "Expires" in first.headers
    fake_esi_server.reset()


@pytest.mark.parametrize("kind", ["garbage", "foreign", "expired", "scope", "character"])
def test_bearer_tokens_are_verified(fake_esi_server, fake_sso_server, kind):
    fake_esi_server.reset()
    mint = fake_sso_server.mint_access_token
    token = {
        "garbage": "not.a.jwt",
        "foreign": mint(1, [SKILLS], sign_with_foreign_key=True),
        "expired": mint(1, [SKILLS], expires_in=-60),
        "scope": mint(1, ["esi-other.v1"]),
        "character": mint(2, [SKILLS]),
    }[kind]
    answer = get(fake_esi_server, "/characters/1/skills", token)
    assert answer.status_code in (401, 403)
    assert get(fake_esi_server, "/characters/1/skills", mint(1, [SKILLS])).status_code == 200
    fake_esi_server.reset()


def test_error_limit_then_420(fake_esi_server):
    fake_esi_server.reset()
    fake_esi_server.error_limit = 3
    try:
        statuses = [get(fake_esi_server, "/nowhere").status_code for _ in range(4)]
        assert statuses == [404, 404, 404, 420]
        assert get(fake_esi_server, "/status").status_code == 420
    finally:
        fake_esi_server.error_limit = 100
        fake_esi_server.reset()


def test_cli_serves_until_terminated():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esi_views.testing.fake_esi",
            "--port",
            "0",
            "--quiet",
            "--window",
            "2",
            "--limit",
            "10",
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Fake ESI running at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        answer = requests.get(url + "/status", timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Ratelimit-Limit"] == "10/2s"
    finally:
        process.terminate()
        code = process.wait(timeout=30)
        errors = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    assert code == 0, errors
