"""Anonymous and automated traffic stays cheap: what it may write, and how much.

HEAD, OPTIONS and TRACE never start an SSO flow and write no row (no session, no flow);
OPTIONS passes through to the view. GETs start flows, but one session keeps at most
ESI_MAX_FLOWS_PER_SESSION of them. Every behaviour runs through mixin and decorator.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from esi_views.models import CallbackRedirect, Token
from tests.browserless import follow, to_sso_and_back, trace_entry
from tests.views_app import VIEWS as FORMS_AND_VIEWS

FORMS = tuple(FORMS_AND_VIEWS)  # mixin, decorator, and their async twins

pytestmark = pytest.mark.django_db

VIEWS = ("token", "new_token", "tokens", "new_tokens", "single_use")
QUIET_METHODS = ("head", "options", "trace")
PILOT = 90008001


@pytest.fixture(autouse=True)
def pilot(fake_sso):
    fake_sso.add_character(PILOT, "Flood Test Pilot")


def _rows() -> tuple[int, int, int]:
    return Session.objects.count(), CallbackRedirect.objects.count(), Token.objects.count()


def _writes(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]


def _quiet_request(client, method: str, url: str):
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(url)
    assert _writes(queries.captured_queries) == [], (method, url)
    assert "oauth/authorize" not in response.get("Location", "")
    return response


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
@pytest.mark.parametrize("method", QUIET_METHODS)
@pytest.mark.parametrize("name", VIEWS)
def test_quiet_methods_write_nothing_and_start_no_flow(
    fake_sso, esi_token, name, method, logged_in
):
    traces = {}
    for form in FORMS:
        client = Client()
        if logged_in:
            client.force_login(get_user_model().objects.create_user(f"quiet-{form}"))
        before = _rows()
        response = _quiet_request(client, method, f"/v/{form}/{name}/1/")
        assert _rows() == before
        if method == "options":  # passed through to the view: Django's OPTIONS answer
            assert response.status_code == 200 and "GET" in response["Allow"]
        elif response.status_code == 302:  # tokens_required sends anonymous users to log in
            assert name in ("tokens", "new_tokens") and not logged_in
            assert response["Location"].startswith("/accounts/login/")
        else:
            # Where a GET would go to the EVE SSO: HEAD an empty 200, TRACE a 405.
            assert response.status_code == (200 if method == "head" else 405)
            assert response.content == b""
        traces[form] = trace_entry(response)
    assert len({repr(trace) for trace in traces.values()}) == 1, traces


@pytest.mark.parametrize("form", FORMS)
def test_head_on_a_handed_back_token_still_reaches_the_view(client, fake_sso, form):
    """HEAD gets what GET gets when no flow is needed: here, the view with its token."""
    first = client.get(f"/v/{form}/single_use/1/")
    back = to_sso_and_back(client, first, fake_sso, PILOT)
    flows = CallbackRedirect.objects.count()
    head = client.head(back["Location"])
    assert head.status_code == 200 and head["Content-Type"] == "application/json"
    assert CallbackRedirect.objects.count() == flows
    assert follow(client, back).json()["character"] == PILOT


@pytest.mark.parametrize("method", ["head", "options"])
def test_the_login_view_writes_nothing_on_head_and_options(client, fake_sso, method):
    response = _quiet_request(client, method, "/esi/login/?scopes=publicData&next=/x/")
    assert response.status_code == 200 and response.content == b""
    assert _rows() == (0, 0, 0)
    if method == "options":
        assert set(response["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert client.get("/esi/login/?scopes=publicData").status_code == 302  # GET still works
    assert CallbackRedirect.objects.count() == 1


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_start_no_flow_either(fake_sso, method):
    client = Client(enforce_csrf_checks=False)
    response = getattr(client, method)("/v/mixin/single_use/1/")
    assert response.status_code == 405 and "GET" in response["Allow"]
    assert _rows() == (0, 0, 0)


# -- one session, many GETs: the flow cap ------------------------------------------------------


def test_a_thousand_anonymous_gets_in_one_session_leave_at_most_the_cap(client, fake_sso, settings):
    """The measurement docs/security.md cites: rows left by 1,000 GETs of one session."""
    assert not hasattr(settings, "ESI_MAX_FLOWS_PER_SESSION")  # the default: 10
    urls = [
        f"/v/{form}/{name}/{n}/"
        for n in range(50)
        for form in FORMS
        for name in ("token", "single_use", "new_token")
    ]
    urls += ["/esi/login/?scopes=publicData"] * (1000 - len(urls))
    assert len(urls) == 1000
    for url in urls:
        assert client.get(url).status_code == 302
    assert Session.objects.count() == 1
    assert CallbackRedirect.objects.count() == 10
    assert Token.objects.count() == 0


def test_the_newest_flows_survive_the_cap_and_the_oldest_are_refused(client, fake_sso, settings):
    settings.ESI_MAX_FLOWS_PER_SESSION = 3
    starts = [client.get(f"/v/mixin/single_use/{n}/") for n in range(5)]
    assert CallbackRedirect.objects.count() == 3
    dropped = to_sso_and_back(client, starts[0], fake_sso, PILOT)
    assert dropped.status_code == 400  # unknown login attempt, a clear page
    kept = to_sso_and_back(client, starts[4], fake_sso, PILOT)
    assert follow(client, kept).json()["character"] == PILOT
    assert Token.objects.count() == 1


def test_the_cap_is_per_session(fake_sso, settings):
    settings.ESI_MAX_FLOWS_PER_SESSION = 2
    clients = [Client() for _ in range(3)]
    for client in clients:
        for n in range(4):
            client.get(f"/v/decorator/single_use/{n}/")
    assert CallbackRedirect.objects.count() == 6
    assert Session.objects.count() == 3


@pytest.mark.parametrize("cap", [0, -5])
def test_a_nonsense_cap_still_keeps_the_flow_just_started(client, fake_sso, settings, cap):
    settings.ESI_MAX_FLOWS_PER_SESSION = cap
    first = client.get("/v/mixin/single_use/1/")
    client.get("/v/mixin/single_use/2/")
    assert CallbackRedirect.objects.count() == 1
    assert to_sso_and_back(client, first, fake_sso, PILOT).status_code == 400
