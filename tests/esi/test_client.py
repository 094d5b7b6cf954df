"""token.esi() and public() against the fake ESI and fake SSO: real HTTP, no mocks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from esi_views import __version__
from esi_views.esi import (
    EsiResponseError,
    EsiRouteError,
    EsiScopeError,
    public,
    register_route,
)
from esi_views.esi.routes import ROUTE_SCOPES, match_route
from esi_views.testing import FakeRoute

SKILLS = "esi-skills.read_skills.v1"
ASSETS = "esi-assets.read_assets.v1"
SKILLS_PATH = "/characters/{character_id}/skills/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(fake_esi, esi_token):
    return esi_token(character_id=90000001, scopes=[SKILLS, ASSETS])


def test_bearer_call_returns_parsed_answer(token, fake_esi):
    answer = token.esi().get(SKILLS_PATH, character_id=90000001)
    assert answer.status == 200
    assert answer.data["total_sp"] == 5000000
    assert answer.from_cache is False
    assert answer.headers["X-Ratelimit-Group"] == "char-skill"
    assert fake_esi.spent["char-skill"] == 2


def test_headers_sent(token, fake_esi, settings):
    settings.ESI_APP_NAME = "MyCorpTool/1.2"
    settings.ESI_COMPATIBILITY_DATE = "2025-12-01"
    token.esi().get(SKILLS_PATH, character_id=90000001)
    sent = fake_esi._protocol.last_headers
    assert sent["X-Compatibility-Date"] == "2025-12-01"
    agent = sent["User-Agent"]
    assert agent.startswith("MyCorpTool/1.2 (tests@example.com; eve-client:")
    assert f"django-esi-views/{__version__}" in agent
    assert sent["Authorization"].startswith("Bearer ey")


def test_missing_scope_refused_before_any_request(fake_esi, esi_token):
    token = esi_token(character_id=90000002, scopes=[ASSETS])
    with pytest.raises(EsiScopeError) as caught:
        token.esi().get(SKILLS_PATH, character_id=90000002)
    assert caught.value.scope == SKILLS
    assert "esi-skills.read_skills.v1" in str(caught.value)
    assert sum(fake_esi.calls.values()) == 0


def test_scoped_route_refused_without_token(fake_esi):
    with pytest.raises(EsiScopeError):
        public().get(SKILLS_PATH, character_id=90000001)
    assert sum(fake_esi.calls.values()) == 0


def test_other_characters_route_refused_before_request(token, fake_esi):
    with pytest.raises(EsiRouteError, match="character 90000009"):
        token.esi().get("/characters/90000009/skills/")
    assert sum(fake_esi.calls.values()) == 0


@pytest.mark.parametrize("value", ["1/../../status", "..", "1?x=1", "a b", "", "1/wallet"])
def test_hostile_path_values_refused(token, fake_esi, value):
    with pytest.raises(EsiRouteError):
        token.esi().get(SKILLS_PATH, character_id=value)
    assert sum(fake_esi.calls.values()) == 0


@pytest.mark.parametrize("path", ["/status/../characters/1/skills", "/status?x=1", "/{x}"])
def test_hostile_paths_refused(fake_esi, path):
    with pytest.raises(EsiRouteError):
        public().get(path)
    assert sum(fake_esi.calls.values()) == 0


def test_expired_token_renewed_through_the_store(token, fake_esi, fake_sso):
    token.expires_at = timezone.now() - timedelta(minutes=5)
    token.save()
    answer = token.esi().get(SKILLS_PATH, character_id=90000001)
    assert answer.status == 200
    assert fake_sso.calls["token:refresh_token"] == 1
    token.refresh_from_db()
    assert token.expires_at > timezone.now()


def test_public_post_body(fake_esi):
    answer = public().post("/universe/names/", json=[1, 2])
    assert [row["id"] for row in answer.data] == [1, 2]
    assert fake_esi._protocol.last_headers.get("Authorization") is None


def test_get_all_joins_pages(token, fake_esi):
    answer = token.esi().get_all("/characters/{character_id}/assets/", character_id=90000001)
    assert answer.pages == 3
    assert [row["item_id"] for row in answer.data] == [
        1000,
        1001,
        1002,
        2000,
        2001,
        2002,
        3000,
        3001,
        3002,
    ]
    assert fake_esi.calls["/characters/{character_id}/assets"] == 3


def test_expires_answers_from_cache_without_request(fake_esi):
    first = public().get("/status/")
    second = public().get("/status/")
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.data == first.data
    assert fake_esi.calls["/status"] == 1


def test_etag_revalidation_costs_one_token(token, fake_esi):
    # The skills route sends an ETag but no Expires: every repeat revalidates.
    first = token.esi().get(SKILLS_PATH, character_id=90000001)
    second = token.esi().get(SKILLS_PATH, character_id=90000001)
    assert second.from_cache and second.data == first.data and second.status == 200
    assert fake_esi._protocol.last_headers["If-None-Match"] == first.headers["ETag"]
    assert fake_esi.calls["status:304"] == 1
    assert fake_esi.spent["char-skill"] == 3  # 2 for the 200, 1 for the 304


def test_cache_is_per_character(fake_esi, esi_token):
    a = esi_token(character_id=90000001, scopes=[SKILLS])
    b = esi_token(character_id=90000002, scopes=[SKILLS])
    a.esi().get(SKILLS_PATH, character_id=90000001)
    b.esi().get(SKILLS_PATH, character_id=90000002)
    assert fake_esi.calls["status:200"] == 2  # b's call was not answered with a's data


def test_error_status_raises_with_answer(token, fake_esi):
    fake_esi.inject("not_found")
    with pytest.raises(EsiResponseError) as caught:
        token.esi().get(SKILLS_PATH, character_id=90000001)
    assert caught.value.status == 404
    assert caught.value.answer.data == {"error": "Not found"}
    assert fake_esi.spent["char-skill"] == 5


def test_non_json_body_gives_none_data_and_a_log_line(fake_esi, caplog):
    fake_esi.inject("non_json")
    answer = public().get("/characters/{character_id}/", character_id=5)
    assert answer.status == 200 and answer.data is None and answer.text == "<html>oops"
    assert "not JSON" in caplog.text


def test_route_table_matches_literal_before_placeholder():
    assert match_route("GET", "/latest/characters/1/mail/labels/").template == (
        "/characters/{character_id}/mail/labels"
    )
    assert match_route("GET", "/characters/1/mail/7/").scope == "esi-mail.read_mail.v1"
    assert match_route("POST", "/characters/1/mail/").scope == "esi-mail.send_mail.v1"
    unknown = match_route("GET", "/v2/dogma/attributes/12/")
    assert (unknown.known, unknown.scope, unknown.template) == (
        False,
        None,
        "/dogma/attributes/{id}",
    )


def test_register_route_adds_a_scope_check(fake_esi, esi_token):
    fake_esi.add_route(
        FakeRoute(
            "GET", "/characters/{character_id}/loyalty/offers", "lp", "esi-x.read.v1", True, []
        )
    )
    register_route("GET", "/characters/{character_id}/loyalty/offers", "esi-x.read.v1")
    try:
        token = esi_token(character_id=90000003, scopes=[SKILLS])
        with pytest.raises(EsiScopeError):
            token.esi().get("/characters/90000003/loyalty/offers")
    finally:
        ROUTE_SCOPES.pop(("GET", "/characters/{character_id}/loyalty/offers"))
        register_route("GET", "/status", None)
