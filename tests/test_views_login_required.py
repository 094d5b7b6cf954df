"""Django's LoginRequiredMiddleware (5.1+) installed: what must stay open, what stays closed.

The EVE login itself (login link, callback), the selection POST (which answers for
itself) and single-use views work for anonymous users; token_required and
tokens_required views send them to the login page as before. Mixin and decorator alike.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.views import View

from esi_views.decorators import single_use_token
from esi_views.mixins import SingleUseTokenMixin
from esi_views.models import CallbackRedirect, Token
from tests.browserless import follow, to_sso_and_back, trace_entry
from tests.views_app import VIEWS as FORMS_AND_VIEWS

FORMS = tuple(FORMS_AND_VIEWS)  # mixin, decorator, and their async twins

pytestmark = pytest.mark.django_db
PILOT = 90009001
LOGIN_URL = "/accounts/login/"


@pytest.fixture(autouse=True)
def login_required_everywhere(settings, fake_sso):
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    settings.LOGIN_URL = LOGIN_URL
    fake_sso.add_character(PILOT, "Anonymous Pilot")


def test_the_middleware_is_really_installed(client):
    """Else the tests below would pass for nothing: without the middleware, an anonymous
    user of a token_required view is sent to the EVE SSO, not to the login page."""
    assert client.get("/v/mixin/token/1/")["Location"].startswith(LOGIN_URL)


@pytest.mark.parametrize("form", FORMS)
def test_single_use_views_work_for_anonymous_users(client, fake_sso, form):
    first = client.get(f"/v/{form}/single_use/1/")
    assert first["Location"].startswith(fake_sso.base_url)  # to the SSO, not to log in
    back = to_sso_and_back(client, first, fake_sso, PILOT)
    assert back.status_code == 302 and "esi_flow=" in back["Location"]
    final = follow(client, back)
    assert final.status_code == 200
    assert final.json()["character"] == PILOT and final.json()["user"] is None


def test_mixin_and_decorator_answer_alike(client, fake_sso):
    traces = {}
    for form in FORMS:
        first = client.get(f"/v/{form}/single_use/1/")
        back = to_sso_and_back(client, first, fake_sso, PILOT)
        traces[form] = [trace_entry(r) for r in (first, back, follow(client, back))]
        for name in ("token", "new_token", "tokens", "new_tokens"):
            traces[form].append(trace_entry(client.get(f"/v/{form}/{name}/1/")))
    assert len({repr(trace) for trace in traces.values()}) == 1, traces


def test_the_login_link_and_callback_work_for_anonymous_users(client, fake_sso):
    first = client.get("/esi/login/?scopes=publicData&next=/somewhere/")
    assert first["Location"].startswith(fake_sso.base_url)
    back = to_sso_and_back(client, first, fake_sso, PILOT)
    assert back.status_code == 302 and back["Location"] == "/somewhere/"
    assert Token.objects.get().character_id == PILOT
    # Logged in with EVE: the middleware now lets this user through to token views.
    assert "_auth_user_id" in client.session
    assert not client.get("/v/mixin/tokens/1/").get("Location", "").startswith(LOGIN_URL)


def test_the_callback_answers_hostile_input_itself_not_with_the_login_page(client):
    response = client.get("/esi/callback/?state=nonsense&code=x")
    assert response.status_code == 400
    assert "esi_views/error.html" in [t.name for t in response.templates]


def test_the_selection_post_answers_for_itself(client):
    response = client.post("/esi/select/", {"flow": "forged", "token": "1"})
    assert response.status_code == 403  # "log in first", our page, not a redirect
    assert "esi_views/error.html" in [t.name for t in response.templates]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ["token", "new_token", "tokens", "new_tokens"])
def test_token_views_still_require_login(client, form, name):
    response = client.get(f"/v/{form}/{name}/1/?a=b")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN_URL}?next=")
    assert CallbackRedirect.objects.count() == 0


@pytest.mark.parametrize("form", FORMS)
def test_logged_in_users_use_token_views_as_before(client, fake_sso, form):
    client.force_login(get_user_model().objects.create_user(f"member-{form}"))
    first = client.get(f"/v/{form}/token/1/")
    back = to_sso_and_back(client, first, fake_sso, PILOT)
    assert follow(client, back).json()["character"] == PILOT


def test_a_single_use_view_can_opt_back_into_login():
    class Private(SingleUseTokenMixin, View):
        login_required = True

    @single_use_token()
    def opened(request, token):
        return HttpResponse()

    middleware = LoginRequiredMiddleware(lambda request: HttpResponse())
    request = RequestFactory().get("/p/")
    request.user = type("Anonymous", (), {"is_authenticated": False})()
    assert middleware.process_view(request, Private.as_view(), (), {}).status_code == 302
    assert middleware.process_view(request, opened, (), {}) is None
