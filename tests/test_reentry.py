"""POST re-entry: a view protected while handling a POST is entered by POST again after
the selection page or the SSO round trip, with its form fields, under CSRF protection;
and the hostile cases (oversized, files, foreign session, replay, forged marker)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.crypto import get_random_string

from esi_views.models import CallbackRedirect
from tests.browserless import client_for, to_sso_and_back
from tests.views_app import SCOPES

pytestmark = pytest.mark.django_db

MAIN, ALT = 90002001, 90002002
FIELDS = {"fleet_name": "Secret Fleet", "member": ["a", "b"], "motd": "ünïcode & <b>"}
EXPECTED = {"fleet_name": ["Secret Fleet"], "member": ["a", "b"], "motd": ["ünïcode & <b>"]}


@pytest.fixture
def form():
    """Which views; tests that parametrize ``form`` override this."""
    return "decorator"


@pytest.fixture
def browser(form):
    """A client that enforces CSRF like a browser-facing site (AsyncClient for async views)."""
    return client_for(form, enforce_csrf_checks=True)


@pytest.fixture
def pilot(browser, fake_sso):
    user = get_user_model().objects.create_user("fc")
    browser.force_login(user)
    fake_sso.add_character(MAIN, "Fleet Commander")
    fake_sso.add_character(ALT, "Fleet Alt")
    return user


def _url(form="decorator", name="token"):
    return f"/v/{form}/{name}/7/"


def _csrf(client) -> str:
    """The browser's CSRF cookie (set once, as a page with a form would)."""
    if "csrftoken" not in client.cookies:
        client.cookies["csrftoken"] = get_random_string(32)
    return client.cookies["csrftoken"].value


def _post(client, url, data):
    return client.post(url, {**data, "csrfmiddlewaretoken": _csrf(client)})


def _reenter(client, location):
    """What the browser does with the re-entry page: GET it, then submit its form."""
    page = client.get(location)
    assert page.status_code == 200, page.content[:300]
    assert page.templates[0].name == "esi_views/reentry.html"
    html = page.content.decode()
    assert "Secret Fleet" not in html  # the fields stay on the server
    assert "no-store" in page["Cache-Control"]
    token = page.context["csrf_token"]
    return page, client.post(
        location, {"esi_reentry": page.context["key"], "csrfmiddlewaretoken": str(token)}
    )


@pytest.mark.parametrize("form", ["mixin", "decorator", "async_mixin", "async_decorator"])
def test_after_the_selection_page(browser, pilot, esi_token, form):
    token = esi_token(pilot, character_id=ALT, scopes=SCOPES)
    esi_token(pilot, character_id=MAIN, scopes=SCOPES)
    page = _post(browser, _url(form), FIELDS)
    assert page.status_code == 200 and page.context["flow"]
    chosen = _post(browser, "/esi/select/", {"flow": page.context["flow"], "token": token.pk})
    assert chosen.status_code == 302 and "Secret" not in chosen["Location"]
    _, entered = _reenter(browser, chosen["Location"])
    body = entered.json()
    assert (body["method"], body["character"], body["form"]) == ("POST", ALT, EXPECTED)
    # Replay of the re-entry: refused, the view is not run again.
    again = browser.post(
        chosen["Location"], {"esi_reentry": page_key(chosen), "csrfmiddlewaretoken": _csrf(browser)}
    )
    assert again.status_code == 400
    assert b"already sent" in again.content.lower()


def page_key(response) -> str:
    return response["Location"].split("esi_flow=")[1]


@pytest.mark.parametrize(
    ("form", "name"),
    [
        ("mixin", "token"),
        ("decorator", "tokens"),
        ("decorator", "single_use"),
        ("async_mixin", "tokens"),
        ("async_decorator", "token"),
        ("async_mixin", "single_use"),
    ],
)
def test_after_the_sso_round_trip(browser, pilot, fake_sso, form, name):
    to_sso = _post(browser, _url(form, name), FIELDS)
    assert to_sso.status_code == 302 and "Secret" not in to_sso["Location"]
    back = to_sso_and_back(browser, to_sso, fake_sso, MAIN)
    _, entered = _reenter(browser, back["Location"])
    body = entered.json()
    assert body["method"] == "POST" and body["form"] == EXPECTED
    assert MAIN in ([body["character"]] if body["tokens"] is None else body["tokens"])


def test_add_a_character_from_the_selection_keeps_the_form(browser, pilot, fake_sso, esi_token):
    esi_token(pilot, character_id=MAIN, scopes=SCOPES)
    page = _post(browser, _url(), FIELDS)
    to_sso = _post(browser, "/esi/select/", {"flow": page.context["flow"], "action": "add"})
    back = to_sso_and_back(browser, to_sso, fake_sso, ALT)
    _, entered = _reenter(browser, back["Location"])
    assert (entered.json()["character"], entered.json()["form"]) == (ALT, EXPECTED)


def test_a_get_stays_a_get(browser, pilot, fake_sso):
    back = to_sso_and_back(browser, browser.get(_url()), fake_sso, MAIN)
    final = browser.get(back["Location"])
    assert final.json()["method"] == "GET" and "form" not in final.json()


def test_fields_are_stored_encrypted(browser, pilot, fake_sso):
    _post(browser, _url(), FIELDS)
    stored = CallbackRedirect.objects.values_list("form_data", flat=True).get()
    assert stored and "Secret Fleet" not in stored
    assert CallbackRedirect.objects.get().method == "POST"


def test_csrf_is_enforced_on_the_re_entry(browser, pilot, fake_sso):
    back = to_sso_and_back(browser, _post(browser, _url(), FIELDS), fake_sso, MAIN)
    page = browser.get(back["Location"])
    forged = browser.post(back["Location"], {"esi_reentry": page.context["key"]})
    assert forged.status_code == 403  # Django's CSRF failure: no token in the form
    # Nothing was used up: the real re-entry still works.
    _, entered = _reenter(browser, back["Location"])
    assert entered.json()["form"] == EXPECTED


def test_another_session_cannot_re_enter(browser, pilot, fake_sso):
    back = to_sso_and_back(browser, _post(browser, _url(), FIELDS), fake_sso, MAIN)
    key = browser.get(back["Location"]).context["key"]
    intruder = Client(enforce_csrf_checks=True)
    intruder.force_login(get_user_model().objects.create_user("intruder"))
    stolen = intruder.post(
        back["Location"], {"esi_reentry": key, "csrfmiddlewaretoken": _csrf(intruder)}
    )
    assert stolen.status_code == 403
    assert b"Secret Fleet" not in stolen.content
    peek = intruder.get(back["Location"])  # not handed back: a flow of its own
    assert peek.status_code == 302 and "esi_flow" not in peek["Location"]
    _, entered = _reenter(browser, back["Location"])  # the owner still can
    assert entered.json()["form"] == EXPECTED


def test_a_marker_of_another_flow_is_refused(browser, pilot, fake_sso):
    first = to_sso_and_back(browser, _post(browser, _url(), FIELDS), fake_sso, MAIN)
    page = _post(browser, _url(), {"x": "y"})  # now a token exists: the selection page
    token_id = page.context["characters"][0]["token_id"]
    second = _post(browser, "/esi/select/", {"flow": page.context["flow"], "token": token_id})
    other_key = browser.get(second["Location"]).context["key"]
    mixed = browser.post(
        first["Location"], {"esi_reentry": other_key, "csrfmiddlewaretoken": _csrf(browser)}
    )
    assert mixed.status_code == 403


@pytest.mark.parametrize("marker", ["", "x" * 500, "\x00", "../../etc"])
def test_hostile_markers_without_a_flow(browser, pilot, marker):
    answer = browser.post(
        _url() + "?esi_flow=" + "A" * 43,
        {"esi_reentry": marker, "csrfmiddlewaretoken": _csrf(browser)},
    )
    assert answer.status_code == 403


def test_an_oversized_form_is_refused_before_any_flow(browser, pilot, settings):
    settings.ESI_REENTRY_MAX_BYTES = 1000
    answer = _post(browser, _url(), {"motd": "x" * 1001})
    assert answer.status_code == 413
    assert not CallbackRedirect.objects.exists()


def test_files_are_refused(browser, pilot):
    upload = SimpleUploadedFile("fit.txt", b"[Rifter, fit]")
    answer = browser.post(_url(), {"fit": upload, "csrfmiddlewaretoken": _csrf(browser)})
    assert answer.status_code == 400
    assert b"files" in answer.content.lower()
    assert not CallbackRedirect.objects.exists()


def test_a_kept_form_cannot_be_used_as_an_oauth_state(browser, pilot, esi_token, client):
    esi_token(pilot, character_id=MAIN, scopes=SCOPES)
    _post(browser, _url(), FIELDS)  # selection page: the form waits in a flow record
    kept = CallbackRedirect.objects.get()
    answer = browser.get(f"/esi/callback/?state={kept.state}&code=abc")
    assert answer.status_code == 400


def test_a_csrf_exempt_view_keeps_no_form(browser, pilot):
    # Another site could post to it: keeping its fields would let the re-entry post them
    # with a valid CSRF token once the victim has logged in.
    answer = browser.post("/v/exempt/token/", FIELDS)
    assert answer.status_code == 403
    assert not CallbackRedirect.objects.exists()
    to_sso = browser.get("/v/exempt/token/")  # a GET still goes through the flow
    assert to_sso.status_code == 302
