"""The sample site's flows in a real browser (see conftest.py for the set-up)."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from .conftest import TASK_RATE

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def choose_at_sso(page, shot, name: str, character: str) -> None:
    """On the fake SSO's picker page: screenshot, then log in as ``character``."""
    page.wait_for_selector("text=Fake EVE Online SSO")
    shot(page, name)
    page.get_by_role("button", name=character).click()


def log_in(page, site, shot, character: str) -> None:
    page.goto(site("/"))
    page.get_by_test_id("login").click()
    choose_at_sso(page, shot, "sso-picker", character)
    page.wait_for_url(site("/"))
    assert page.get_by_test_id("current-user").inner_text() == character


def test_login_choose_between_characters_and_add_a_third(page, demo_site, shot):
    site = demo_site
    page.goto(site("/"))
    shot(page, "home")
    log_in(page, site, shot, "Amarr Pilot")
    assert page.locator(".messages").inner_text() == "Logged in as Amarr Pilot."
    shot(page, "logged-in")

    # A second character, through the shipped characters page's "add a character".
    page.get_by_test_id("nav-characters").click()
    page.wait_for_url(site("/esi/characters/"))
    page.get_by_role("link", name="+ Add a character").click()
    choose_at_sso(page, shot, "sso-picker-add", "Caldari Pilot")
    page.wait_for_url(site("/esi/characters/"))
    assert page.locator(".messages").inner_text() == "Added Caldari Pilot to your account."
    assert page.locator("li.character .name").all_inner_texts() == ["Amarr Pilot", "Caldari Pilot"]
    shot(page, "characters-page-two")

    # TokenRequiredMixin: the selection page lists both; pick the second.
    page.goto(site("/character/"))
    page.wait_for_selector("text=Choose a character")
    choices = page.get_by_role("button", name=re.compile(r"^Continue as "))
    assert choices.count() == 2
    shot(page, "selection-two-characters")
    page.get_by_role("button", name="Continue as Caldari Pilot").click()
    page.wait_for_url(re.compile(r"/character/\?esi_flow="))
    panel = page.get_by_test_id("token-panel")
    assert panel.get_attribute("data-variant") == "mixin"
    assert page.get_by_test_id("character-name").inner_text() == "Caldari Pilot"
    claims = page.get_by_test_id("claims").inner_text()
    assert "CHARACTER:EVE:90000002" in claims
    assert "esi-skills.read_skills.v1" in claims
    assert "eyJ" not in page.content()  # the access token is never on the page
    shot(page, "mixin-page-caldari")

    # The decorator page: add a third character from its selection page.
    page.goto(site("/character/decorated/"))
    page.wait_for_selector("text=Choose a character")
    page.get_by_role("button", name="+ Add another character").click()
    choose_at_sso(page, shot, "sso-picker-third", "Gallente Pilot")
    page.wait_for_url(re.compile(r"/character/decorated/\?esi_flow="))
    assert page.get_by_test_id("token-panel").get_attribute("data-variant") == "decorator"
    assert page.get_by_test_id("character-name").inner_text() == "Gallente Pilot"
    shot(page, "decorator-page-gallente")

    # TokensRequiredMixin: all three.
    page.goto(site("/characters/"))
    names = page.get_by_test_id("tokens").locator("tbody tr strong").all_inner_texts()
    assert names == ["Amarr Pilot", "Caldari Pilot", "Gallente Pilot"]
    shot(page, "all-characters")

    page.goto(site("/character/"))
    assert page.get_by_role("button", name=re.compile(r"^Continue as ")).count() == 3
    shot(page, "selection-three-characters")


def test_characters_page_grant_main_remove_and_alt_login(page, demo_site, shot):
    """The shipped characters page: grant a scope, set the main, remove; an alt logs in."""
    site, sso = demo_site, demo_site.sso
    # Characters of their own: the site (and its accounts) is shared by this module's tests.
    for character_id, name in (
        (90000011, "Khanid Pilot"),
        (90000012, "Sansha Pilot"),
        (90000013, "Jove Pilot"),
    ):
        sso.add_character(character_id, name)
    log_in(page, site, shot, "Khanid Pilot")
    page.goto(site("/esi/characters/"))
    for name in ("Sansha Pilot", "Jove Pilot"):
        page.get_by_role("link", name="+ Add a character").click()
        choose_at_sso(page, shot, "sso-picker-add", name)
        page.wait_for_url(site("/esi/characters/"))
    rows = page.locator("li.character")
    assert rows.locator(".name").all_inner_texts() == [
        "Khanid Pilot",
        "Jove Pilot",
        "Sansha Pilot",
    ]  # the main, then by name
    assert rows.first.locator(".badge.main").is_visible()

    # Grant Khanid the wallet scope: a second token, still one row.
    khanid = page.locator("li.character", has_text="Khanid Pilot")
    khanid.get_by_text("Grant more scopes").click()
    khanid.get_by_label("esi-wallet.read_character_wallet.v1").check()
    shot(page, "characters-grant")
    khanid.get_by_role("button", name="Log in as Khanid Pilot at the EVE SSO").click()
    choose_at_sso(page, shot, "sso-picker-grant", "Khanid Pilot")
    page.wait_for_url(site("/esi/characters/"))
    assert page.locator("li.character").count() == 3
    khanid = page.locator("li.character", has_text="Khanid Pilot")
    assert "esi-wallet.read_character_wallet.v1" in khanid.locator(".scopes").inner_text()
    page.goto(site("/characters/"))  # TokensRequiredMixin: one row per character too
    names = page.get_by_test_id("tokens").locator("tbody tr strong").all_inner_texts()
    assert names == ["Jove Pilot", "Khanid Pilot", "Sansha Pilot"]
    khanid_row = page.get_by_test_id("tokens").locator("tbody tr", has_text="Khanid Pilot")
    assert khanid_row.locator("td").nth(2).inner_text() == "2"  # two tokens, one row
    api = page.request.get(site("/api/characters/")).json()
    assert sorted(c["character_name"] for c in api) == names
    khanid = next(c for c in api if c["character_name"] == "Khanid Pilot")
    assert khanid["scopes"] == [
        "esi-skills.read_skills.v1",
        "esi-wallet.read_character_wallet.v1",
        "publicData",
    ]

    # Caldari becomes the main character: the header shows it.
    page.goto(site("/esi/characters/"))
    page.get_by_role("button", name="Set Sansha Pilot as main").click()
    page.wait_for_url(site("/esi/characters/"))
    assert page.get_by_test_id("current-user").inner_text() == "Sansha Pilot"
    assert page.locator("li.character .name").first.inner_text() == "Sansha Pilot"

    # Remove Gallente: its refresh token is revoked at the SSO, the row is gone.
    revoked = sso.calls["revoke"]
    page.get_by_role("button", name="Remove Jove Pilot").click()
    page.wait_for_url(site("/esi/characters/"))
    assert page.locator("li.character .name").all_inner_texts() == ["Sansha Pilot", "Khanid Pilot"]
    assert sso.calls["revoke"] == revoked + 1
    shot(page, "characters-after-remove")

    # Log out, log in with the alt: the same account (its main, both characters).
    page.get_by_test_id("logout").click()
    page.wait_for_url(site("/"))
    assert page.get_by_test_id("login").is_visible()
    page.get_by_test_id("login").click()
    choose_at_sso(page, shot, "sso-picker-alt", "Sansha Pilot")
    page.wait_for_url(site("/"))
    assert page.get_by_test_id("current-user").inner_text() == "Sansha Pilot"
    page.goto(site("/esi/characters/"))
    assert page.locator("li.character .name").all_inner_texts() == ["Sansha Pilot", "Khanid Pilot"]


def test_single_use_token_for_an_anonymous_visitor(page, demo_site, shot):
    site = demo_site
    page.goto(site("/single-use/"))
    choose_at_sso(page, shot, "sso-picker", "Gallente Pilot")
    page.wait_for_url(re.compile(r"/single-use/\?esi_flow="))
    assert page.get_by_test_id("character-name").inner_text() == "Gallente Pilot"
    assert page.get_by_text("owned by nobody").is_visible()
    assert page.get_by_role("link", name="Log in with EVE Online").is_visible()  # still anonymous
    assert "publicData" in page.get_by_test_id("claims").inner_text()
    shot(page, "single-use-page")

    # The hand-back link works once per session only: another browser gets nothing.
    url = page.url
    other = page.context.browser.new_context()
    try:
        stranger = other.new_page()
        stranger.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith("http://127.0.0.1")
                else route.abort()
            ),
        )
        stranger.goto(url)
        stranger.wait_for_selector("text=Fake EVE Online SSO")  # sent to the SSO instead
    finally:
        other.close()


def test_api_answers_403_then_200_for_session_and_bearer(page, demo_site, shot):
    site = demo_site
    log_in(page, site, shot, "Amarr Pilot")
    api = page.context.request
    accept = {"Accept": "application/json"}

    denied = api.get(site("/api/wallet/"), headers=accept)
    assert denied.status == 403
    body = denied.json()
    assert body["code"] == "esi_token_required"
    assert body["required_scopes"] == ["esi-wallet.read_character_wallet.v1"]

    page.goto(site("/api-demo/"))
    page.get_by_test_id("call-wallet").click()
    page.wait_for_selector("#status[data-status='403']")
    shot(page, "wallet-403")
    page.get_by_role("link", name=re.compile("Grant esi-wallet")).click()
    choose_at_sso(page, shot, "sso-picker-wallet", "Amarr Pilot")
    page.wait_for_url(site("/api-demo/"))  # a login link adds the token to the account
    page.get_by_test_id("call-wallet").click()
    page.wait_for_selector("#status[data-status='200']")
    result = json.loads(page.get_by_test_id("session-result").inner_text())
    assert result["character_name"] == "Amarr Pilot"
    assert result["authenticated_via"] == "session"
    assert "esi-wallet.read_character_wallet.v1" in result["scopes"]
    shot(page, "wallet-200")

    allowed = api.get(site("/api/wallet/"), headers=accept)
    assert allowed.status == 200

    # Bearer: the server sends the stored access token, without cookies.
    page.get_by_test_id("call-bearer").click()
    assert page.get_by_test_id("bearer-status").inner_text() == "HTTP 200"
    assert '"authenticated_via": "bearer"' in page.get_by_test_id("bearer-result").inner_text()
    shot(page, "bearer-200")

    # Bearer straight from a client, no session: a token minted by the SSO works...
    jwt = demo_site.sso.mint_access_token(
        90000001, ["publicData", "esi-wallet.read_character_wallet.v1"]
    )
    fresh = page.context.browser.new_context()
    try:
        client = fresh.request
        ok = client.get(site("/api/wallet/"), headers={**accept, "Authorization": f"Bearer {jwt}"})
        assert ok.status == 200
        assert ok.json()["authenticated_via"] == "bearer"
        # ... a forged one does not.
        forged = demo_site.sso.mint_access_token(
            90000001, ["publicData"], sign_with_foreign_key=True
        )
        refused = client.get(
            site("/api/me/"), headers={**accept, "Authorization": f"Bearer {forged}"}
        )
        assert refused.status == 401
        assert "invalid_token" in refused.headers["www-authenticate"]
    finally:
        fresh.close()


def test_cancel_at_the_sso_shows_an_error_page(page, demo_site, shot):
    site = demo_site
    page.goto(site("/esi/login/"))
    page.wait_for_selector("text=Fake EVE Online SSO")
    shot(page, "sso-picker")
    with page.expect_response(re.compile(r"/esi/callback/")) as callback:
        page.get_by_role("button", name="Cancel").click()
    assert callback.value.status == 403
    page.wait_for_selector("text=Login cancelled")
    assert page.get_by_text("Error 403").is_visible()
    assert "you declined" in page.inner_text("main")
    shot(page, "error-page")


def test_rate_limited_tasks_start_at_the_configured_rate(page, demo_site, shot):
    site = demo_site
    page.goto(site("/tasks/"))
    page.fill("#count", "6")
    page.get_by_test_id("start-tasks").click()
    page.wait_for_url(re.compile(r"/tasks/\?batch="))
    page.wait_for_selector("[data-testid=timeline] .track")
    shot(page, "tasks-running")
    page.wait_for_selector("[data-testid=timeline][data-done='1']", timeout=30_000)
    shot(page, "tasks-done")
    batch = page.url.split("batch=")[1]
    status = page.context.request.get(site(f"/tasks/{batch}/status/")).json()
    assert status["rate"] == TASK_RATE
    assert status["finished"] == 6
    starts = sorted(t["started"] for t in status["tasks"])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    spacing = status["spacing"]  # 0.2 s
    # The limiter admits nobody within one spacing of the previous start (measured in
    # Redis); the times here are taken in the task threads, so allow for scheduling
    # jitter on a busy machine. Unthrottled, the gaps would be about 0.
    assert min(gaps) >= spacing * 0.6, gaps
    assert starts[-1] - starts[0] == pytest.approx(5 * spacing, abs=1.0)


def test_swagger_ui_and_admin_without_any_cdn(page, demo_site, shot):
    site = demo_site
    page.goto(site("/api/docs/"))
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".opblock-summary-path").filter(has_text="/api/wallet/").count() == 1
    shot(page, "swagger-ui")

    page.goto(site("/admin/login/"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("text=Site administration")
    page.goto(site("/admin/esi_views/token/"))
    shot(page, "admin-tokens")


def test_swagger_ui_authorize_with_the_demo_token_and_try_it_out(page, demo_site, shot):
    """Swagger UI's Authorize (eveBearer) with the token from the demo-only page, then Execute."""
    site = demo_site
    # A character of its own: the site (and its accounts) is shared by this module's tests.
    site.sso.add_character(90000021, "Minmatar Pilot")
    log_in(page, site, shot, "Minmatar Pilot")

    page.goto(site("/api-demo/token/"))
    assert page.get_by_test_id("demo-only").is_visible()
    assert "eyJ" not in page.content()  # shown on request (POST) only
    with page.expect_response(site("/api-demo/token/")) as shown:
        page.get_by_test_id("show-token").click()
    assert "no-store" in shown.value.headers["cache-control"]
    assert page.get_by_test_id("token-character").inner_text() == "Minmatar Pilot"
    token = page.get_by_test_id("access-token").input_value()
    assert token.startswith("eyJ")
    shot(page, "demo-token")

    # A fresh context: no session cookie, so only the bearer token can authenticate.
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    try:
        context.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith("http://127.0.0.1")
                else route.abort()
            ),
        )
        docs = context.new_page()
        docs.goto(site("/api/docs/"))
        docs.wait_for_selector(".swagger-ui .opblock")
        docs.get_by_role("button", name="Authorize").first.click()
        dialog = docs.locator(".dialog-ux")
        bearer = dialog.locator(".auth-container form", has_text="eveBearer")
        bearer.locator("input").fill(token)
        shot(docs, "swagger-authorize")
        bearer.locator("button.authorize").click()
        bearer.get_by_role("button", name="Remove authorization").wait_for()  # authorized
        dialog.locator("button.close-modal").click()

        me = docs.locator(".opblock").filter(
            has=docs.locator(".opblock-summary-path", has_text=re.compile(r"^/api/me/$"))
        )
        me.locator(".opblock-summary").click()
        me.get_by_role("button", name="Try it out").click()
        with docs.expect_response(site("/api/me/")) as called:
            me.get_by_role("button", name="Execute").click()
        assert called.value.request.headers["authorization"] == f"Bearer {token}"
        live = me.locator(".live-responses-table")
        live.locator(".response-col_status", has_text="200").wait_for()
        body = json.loads(
            live.locator(".response-col_description pre.microlight").first.inner_text()
        )
        assert body["character_name"] == "Minmatar Pilot"
        assert body["character_id"] == 90000021
        assert body["authenticated_via"] == "bearer"
        shot(docs, "swagger-try-it-out")

        # Without the token the same operation is refused: the 200 came from Authorize.
        refused = context.request.get(site("/api/me/"), headers={"Accept": "application/json"})
        assert refused.status in (401, 403)
        # The token page gives a visitor without a session nothing: a login, a CSRF refusal.
        anonymous = context.request.get(site("/api-demo/token/"), max_redirects=0)
        assert anonymous.status == 302
        assert anonymous.headers["location"].startswith("/esi/login/")
        forged = context.request.post(site("/api-demo/token/"), max_redirects=0)
        assert forged.status == 403
        assert "eyJ" not in forged.text()
    finally:
        context.close()
