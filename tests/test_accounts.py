"""Logging in with EVE, alts, the characters page, and their hostile cases (issue 14).

Every login goes through our login view, the fake SSO over HTTP and our callback.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from esi_views.models import CharacterOwnership, Token
from tests.browserless import to_sso_and_back

pytestmark = pytest.mark.django_db

MAIN, ALT, THIRD = 90014001, 90014002, 90014003
SKILLS = "esi-skills.read_skills.v1"
WALLET = "esi-wallet.read_character_wallet.v1"


@pytest.fixture
def pilots(fake_sso):
    fake_sso.add_character(MAIN, "Main Pilot")
    fake_sso.add_character(ALT, "Alt Pilot")
    fake_sso.add_character(THIRD, "Third Pilot")
    return fake_sso


def log_in(client, fake_sso, character_id, *, next_url=None, scopes=""):
    """Our login view -> fake SSO -> our callback; the callback's response."""
    query = {}
    if next_url is not None:
        query["next"] = next_url
    if scopes:
        query["scopes"] = scopes
    start = client.get("/esi/login/", query)
    return to_sso_and_back(client, start, fake_sso, character_id)


def logged_in_user(client):
    user_id = client.session.get(SESSION_KEY)
    return get_user_model().objects.get(pk=user_id) if user_id else None


# -- login -----------------------------------------------------------------------------------------


def test_login_creates_an_account_and_follows_next(client, pilots):
    back = log_in(client, pilots, MAIN, next_url="/somewhere/?a=1", scopes=SKILLS)
    assert back.status_code == 302 and back["Location"] == "/somewhere/?a=1"
    user = logged_in_user(client)
    assert user is not None and user.username == "main_pilot" and not user.has_usable_password()
    link = CharacterOwnership.objects.get(character_id=MAIN)
    assert link.user == user and link.is_main
    token = Token.objects.get(character_id=MAIN)
    assert token.user == user  # the login's token is the account's: no second SSO trip


def test_login_with_a_linked_character_is_that_account(client, pilots):
    log_in(client, pilots, MAIN)
    first = logged_in_user(client)
    client.post("/esi/logout/")
    assert logged_in_user(client) is None
    log_in(client, pilots, MAIN)
    assert logged_in_user(client) == first
    assert get_user_model().objects.count() == 1


def test_an_alt_added_while_logged_in_logs_into_the_same_account(client, pilots):
    log_in(client, pilots, MAIN)
    user = logged_in_user(client)
    added = log_in(client, pilots, ALT, next_url="/esi/characters/")  # "add a character"
    assert added["Location"] == "/esi/characters/"
    assert logged_in_user(client) == user
    assert CharacterOwnership.objects.get(character_id=ALT).user == user
    assert not CharacterOwnership.objects.get(character_id=ALT).is_main
    client.post("/esi/logout/")
    log_in(client, pilots, ALT)
    assert logged_in_user(client) == user
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example/x",
        "http://testserver.evil.example/",
        "javascript:alert(1)",
        "/ok\x00",
        "\\\\evil.example",
    ],
)
def test_next_off_site_is_replaced(client, pilots, next_url):
    back = log_in(client, pilots, MAIN, next_url=next_url)
    assert back.status_code == 302 and back["Location"] == "/"
    assert logged_in_user(client) is not None


def test_login_redirect_url_when_set(client, pilots, settings):
    settings.LOGIN_REDIRECT_URL = "/home/"
    assert log_in(client, pilots, MAIN)["Location"] == "/home/"


def test_usernames_never_collide(client, pilots):
    User = get_user_model()
    User.objects.create_user("main_pilot")
    User.objects.create_user(f"main_pilot_{MAIN}")
    log_in(client, pilots, MAIN)
    user = logged_in_user(client)
    assert user.username.startswith(f"main_pilot_{MAIN}_") and User.objects.count() == 3


def test_no_new_accounts_when_the_setting_says_so(client, pilots, settings):
    settings.ESI_LOGIN_CREATE_USERS = False
    back = log_in(client, pilots, MAIN)
    assert back.status_code == 403 and "Login refused" in back.content.decode()
    assert logged_in_user(client) is None
    assert not Token.objects.exists() and not get_user_model().objects.exists()


def test_a_deactivated_user_cannot_log_in(client, pilots):
    log_in(client, pilots, MAIN)
    user = logged_in_user(client)
    client.post("/esi/logout/")
    user.is_active = False
    user.save()
    tokens_before = Token.objects.count()
    back = log_in(client, pilots, MAIN)
    assert back.status_code == 403
    assert logged_in_user(client) is None
    assert Token.objects.count() == tokens_before  # nothing stored for the refused login


def test_a_deactivated_users_session_stops_working(client, pilots):
    log_in(client, pilots, MAIN)
    get_user_model().objects.update(is_active=False)
    page = client.get("/esi/characters/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")


# -- logout ---------------------------------------------------------------------------------------


def test_logout_by_get_is_refused(client, pilots):
    log_in(client, pilots, MAIN)
    answer = client.get("/esi/logout/")
    assert answer.status_code == 405
    assert logged_in_user(client) is not None


def test_logout_by_post_follows_a_safe_next_only(client, pilots):
    log_in(client, pilots, MAIN)
    assert client.post("/esi/logout/", {"next": "/bye/"})["Location"] == "/bye/"
    assert logged_in_user(client) is None
    log_in(client, pilots, MAIN)
    assert client.post("/esi/logout/", {"next": "https://evil.example/"})["Location"] == "/"


# -- ownership: never taken, except from a seller ---------------------------------------------


def test_linking_a_character_of_another_account_is_refused(client, pilots, django_user_model):
    from django.test import Client

    log_in(client, pilots, MAIN)
    owner = logged_in_user(client)
    intruder = django_user_model.objects.create_user("intruder")
    other = Client()
    other.force_login(intruder)
    back = log_in(other, pilots, MAIN)  # "add a character" with someone else's character
    assert back.status_code == 403 and "another account" in back.content.decode()
    assert CharacterOwnership.objects.get(character_id=MAIN).user == owner
    assert not Token.objects.filter(user=intruder).exists()
    assert Token.objects.filter(user=owner, character_id=MAIN).exists()
    # Nor through a protected view's flow.
    page = other.get(f"/v/mixin/token/{1}/")
    back = to_sso_and_back(other, page, pilots, MAIN)
    assert back.status_code == 403
    assert not Token.objects.filter(user=intruder).exists()


def test_a_sold_character_moves_to_the_buyer(client, pilots):
    from django.test import Client

    log_in(client, pilots, MAIN)
    log_in(client, pilots, ALT)
    seller = logged_in_user(client)
    pilots.add_character(MAIN, "Main Pilot", owner_hash="new-owner-hash")  # sold
    buyer_client = Client()
    log_in(buyer_client, pilots, MAIN)
    buyer = logged_in_user(buyer_client)
    assert buyer != seller
    link = CharacterOwnership.objects.get(character_id=MAIN)
    assert link.user == buyer and link.character_owner_hash == "new-owner-hash" and link.is_main
    assert not Token.objects.filter(user=seller, character_id=MAIN).exists()
    # The seller keeps their other character, which becomes their main.
    assert CharacterOwnership.objects.get(character_id=ALT).is_main
    # Mid-session: the seller's page no longer lists it, and their views never get it.
    assert _ids_on(client.get("/esi/characters/")) == [ALT]
    assert logged_in_user(client) == seller


def test_a_sold_character_added_by_the_buyer_as_an_alt(client, pilots, django_user_model):
    from django.test import Client

    log_in(client, pilots, MAIN)
    seller = logged_in_user(client)
    buyer = django_user_model.objects.create_user("buyer")
    buyer_client = Client()
    buyer_client.force_login(buyer)
    pilots.add_character(MAIN, "Main Pilot", owner_hash="bought")
    assert log_in(buyer_client, pilots, MAIN)["Location"] == "/"
    assert CharacterOwnership.objects.get(character_id=MAIN).user == buyer
    assert not Token.objects.filter(user=seller).exists()


# -- the characters page ---------------------------------------------------------------------------


def _ids_on(page) -> list[int]:
    return [row["character_id"] for row in page.context["characters"]]


def test_characters_page_one_row_per_character(client, pilots):
    log_in(client, pilots, MAIN, scopes=SKILLS)
    log_in(client, pilots, MAIN, scopes=WALLET)  # a second token of the same character
    log_in(client, pilots, ALT)
    assert Token.objects.filter(character_id=MAIN).count() == 2
    page = client.get("/esi/characters/")
    assert page.status_code == 200
    assert _ids_on(page) == [MAIN, ALT]
    main = page.context["characters"][0]
    assert main["scopes"] == sorted([SKILLS, WALLET]) and main["is_main"] and main["usable"]
    html = page.content.decode()
    assert html.count('class="name">Main Pilot<') == 1
    assert f"/characters/{MAIN}/portrait" in html and "Add a character" in html


def test_characters_page_needs_login(client):
    page = client.get("/esi/characters/")
    assert page.status_code == 302 and "next=/esi/characters/" in page["Location"]


def test_set_main(client, pilots):
    log_in(client, pilots, MAIN)
    log_in(client, pilots, ALT)
    assert client.post("/esi/characters/", {"action": "main", "character": ALT}).status_code == 302
    assert CharacterOwnership.objects.get(is_main=True).character_id == ALT
    assert _ids_on(client.get("/esi/characters/")) == [ALT, MAIN]


def test_remove_revokes_deletes_and_unlinks(client, pilots):
    log_in(client, pilots, MAIN)
    log_in(client, pilots, ALT, scopes=SKILLS)
    log_in(client, pilots, ALT, scopes=WALLET)
    revokes = pilots.calls["revoke"]
    answer = client.post("/esi/characters/", {"action": "remove", "character": ALT})
    assert answer.status_code == 302
    assert pilots.calls["revoke"] - revokes == 2  # both refresh tokens revoked at the SSO
    assert not Token.objects.filter(character_id=ALT).exists()
    assert not CharacterOwnership.objects.filter(character_id=ALT).exists()
    # Removing the main character hands "main" to the remaining one... none left here:
    client.post("/esi/characters/", {"action": "remove", "character": MAIN})
    assert not CharacterOwnership.objects.exists()


def test_removing_the_main_makes_another_main(client, pilots):
    log_in(client, pilots, MAIN)
    log_in(client, pilots, ALT)
    client.post("/esi/characters/", {"action": "remove", "character": MAIN})
    assert CharacterOwnership.objects.get().is_main


def test_removing_another_users_character_is_refused(client, pilots):
    from django.test import Client

    log_in(client, pilots, MAIN)
    victim = logged_in_user(client)
    attacker = Client()
    log_in(attacker, pilots, ALT)
    for action in ("remove", "main"):
        answer = attacker.post("/esi/characters/", {"action": action, "character": MAIN})
        assert answer.status_code == 404
    assert CharacterOwnership.objects.get(character_id=MAIN).user == victim
    assert CharacterOwnership.objects.get(character_id=MAIN).is_main
    assert Token.objects.filter(user=victim, character_id=MAIN).exists()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"action": "remove"},
        {"action": "remove", "character": "x"},
        {"action": "remove", "character": "9" * 40},
        {"action": "steal", "character": MAIN},
        {"action": "remove", "character": "-1"},
        {"action": "remove", "character": "1\x00"},
    ],
)
def test_hostile_character_posts_are_400(client, pilots, data):
    log_in(client, pilots, MAIN)
    assert client.post("/esi/characters/", data).status_code == 400
    assert CharacterOwnership.objects.count() == 1


def test_characters_page_posts_need_csrf(pilots):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    log_in(browser, pilots, MAIN)
    assert (
        browser.post("/esi/characters/", {"action": "remove", "character": MAIN}).status_code == 403
    )
    assert browser.post("/esi/logout/").status_code == 403
    assert CharacterOwnership.objects.exists()


def test_grant_more_scopes_form_asks_for_the_union(client, pilots):
    log_in(client, pilots, MAIN, scopes=SKILLS)
    from esi_views.models import Scope

    Scope.objects.get_or_create(name=WALLET)  # the site knows it: offered to grant
    page = client.get("/esi/characters/")
    row = page.context["characters"][0]
    assert row["more_scopes"] == [WALLET]
    start = client.get("/esi/login/", {"next": "/esi/characters/", "scopes": [SKILLS, WALLET]})
    query = parse_qs(urlsplit(start["Location"]).query)
    assert set(query["scope"][0].split()) == {SKILLS, WALLET}


def _many(client, fake_sso, characters: int, tokens_each: int):
    from esi_views.testing.logins import create_token

    user = logged_in_user(client)
    for n in range(characters):
        character_id = 90015000 + n
        fake_sso.add_character(character_id, f"Pilot {n}")
        CharacterOwnership.objects.get_or_create(
            character_id=character_id,
            defaults={"user": user, "character_name": f"Pilot {n}", "character_owner_hash": "x"},
        )
        for k in range(tokens_each):
            create_token(
                fake_sso,
                user=user,
                character_id=character_id,
                scopes=[SKILLS] if k % 2 else [WALLET, f"esi-x.{k}.v1"],
            )


def test_characters_page_query_count_does_not_grow(client, pilots):
    log_in(client, pilots, MAIN)
    _many(client, pilots, 2, 2)
    with CaptureQueriesContext(connection) as small:
        assert len(_ids_on(client.get("/esi/characters/"))) == 3
    _many(client, pilots, 12, 3)
    with CaptureQueriesContext(connection) as large:
        assert len(_ids_on(client.get("/esi/characters/"))) == 13
    assert len(small) == len(large) <= 7, [q["sql"] for q in large.captured_queries]


# -- listings elsewhere: one entry per character -------------------------------------------------


def test_selection_page_lists_a_character_once_and_hands_the_fitting_token(client, pilots):
    from esi_views.testing.logins import create_token

    log_in(client, pilots, MAIN)
    user = logged_in_user(client)
    both = create_token(pilots, user=user, character_id=MAIN, scopes=[SKILLS, WALLET])
    newer = create_token(pilots, user=user, character_id=MAIN, scopes=[SKILLS, WALLET, "x.y"])
    create_token(pilots, user=user, character_id=MAIN, scopes=[SKILLS])  # too few scopes
    log_in(client, pilots, ALT, scopes=[SKILLS, WALLET])
    page = client.get("/v/mixin/token/3/")
    assert page.status_code == 200
    listed = [c["character_id"] for c in page.context["characters"]]
    assert sorted(listed) == [MAIN, ALT]
    main = next(c for c in page.context["characters"] if c["character_id"] == MAIN)
    assert main["token_id"] in {both.pk, newer.pk}
    chosen = client.post("/esi/select/", {"flow": page.context["flow"], "token": main["token_id"]})
    final = client.get(chosen["Location"])
    assert final.json()["character"] == MAIN


def test_merge_tokens_unions_scopes_in_one_query(pilots, django_user_model):
    from esi_views.accounts import merge_tokens
    from esi_views.testing.logins import create_token

    user = django_user_model.objects.create_user("merger")
    create_token(pilots, user=user, character_id=MAIN, scopes=[SKILLS])
    create_token(pilots, user=user, character_id=ALT, scopes=[WALLET])
    create_token(pilots, user=user, character_id=MAIN, scopes=[WALLET])
    tokens = list(Token.objects.filter(user=user).order_by("pk"))
    with CaptureQueriesContext(connection) as queries:
        rows = merge_tokens(tokens)
    assert len(queries) == 1  # the scopes of all tokens at once
    assert [(r.character_id, r.sorted_scopes, len(r.tokens)) for r in rows] == [
        (MAIN, [SKILLS, WALLET], 2),
        (ALT, [WALLET], 1),
    ]
    assert rows[0].expires_at == max(t.expires_at for t in tokens if t.character_id == MAIN)


def test_login_scopes_setting_is_asked_for_by_default(client, pilots, settings):
    settings.ESI_LOGIN_SCOPES = [SKILLS]
    start = client.get("/esi/login/")
    assert parse_qs(urlsplit(start["Location"]).query)["scope"] == [SKILLS]
    explicit = client.get("/esi/login/", {"scopes": WALLET})
    assert parse_qs(urlsplit(explicit["Location"]).query)["scope"] == [WALLET]


def test_owner_hash_change_seen_by_a_refresh_mid_session(client, pilots):
    """The seller is still logged in when EVE starts reporting a new owner."""
    log_in(client, pilots, MAIN, scopes=f"{SKILLS} {WALLET}")  # what /v/ views need
    seller = logged_in_user(client)
    Token.objects.update(expires_at="2000-01-01T00:00:00Z")  # the next use refreshes
    pilots.change_owner(MAIN)
    page = client.get("/v/mixin/token/5/")  # needs a token: the refresh says "sold"
    assert page.status_code == 302 and page["Location"].startswith(pilots.base_url)
    assert not Token.objects.filter(character_id=MAIN).exists()
    rows = client.get("/esi/characters/").context["characters"]
    assert [(r["character_id"], r["usable"]) for r in rows] == [(MAIN, False)]
    # The buyer logs in: the link moves; the seller's session goes on without it.
    from django.test import Client

    buyer = Client()
    log_in(buyer, pilots, MAIN)
    assert logged_in_user(buyer) != seller
    assert client.get("/esi/characters/").context["characters"] == []
    assert logged_in_user(client) == seller


@pytest.mark.parametrize("name", ["Ünïcødé Pilot", "'; DROP TABLE --", "日本語", "x" * 100, "-_-"])
def test_odd_character_names_make_valid_usernames(client, fake_sso, name):
    fake_sso.add_character(MAIN, name)
    back = log_in(client, fake_sso, MAIN, next_url="/next/")
    assert back.status_code == 302 and back["Location"] == "/next/"
    user = logged_in_user(client)
    user.full_clean(exclude=["password"])  # the username passes Django's own validators
    assert CharacterOwnership.objects.get(character_id=MAIN).character_name == name[:100]
