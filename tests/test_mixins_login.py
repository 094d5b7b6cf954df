"""The mixins' login redirect: login_url, get_login_url(), redirect_field_name (AccessMixin)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory
from django.views import View

from esi_views.mixins import TokenRequiredMixin, TokensRequiredMixin

pytestmark = pytest.mark.django_db


class _Tokens(TokensRequiredMixin, View):
    scopes = "esi-skills.read_skills.v1"

    def get(self, request, *args, **kwargs):
        return HttpResponse("reached")


def _anonymous_get(view_class, path="/fleet/?x=1"):
    request = RequestFactory().get(path)
    request.user = AnonymousUser()
    return view_class.as_view()(request)


def test_default_is_settings_login_url_with_next():
    response = _anonymous_get(_Tokens)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/fleet/%3Fx%3D1"


def test_login_url_and_redirect_field_name_attributes():
    class View_(_Tokens):
        login_url = "/sign-in/"
        redirect_field_name = "back"

    assert _anonymous_get(View_)["Location"] == "/sign-in/?back=/fleet/%3Fx%3D1"


def test_login_url_may_be_a_url_name(settings):
    settings.LOGIN_URL = "/unused/"

    class View_(_Tokens):
        login_url = "esi_views:login"

    assert _anonymous_get(View_)["Location"].startswith("/esi/login/?next=")


def test_get_login_url_hook_wins():
    class View_(_Tokens):
        def get_login_url(self):
            return f"/per-request/{self.request.GET['x']}/"

    assert _anonymous_get(View_)["Location"] == "/per-request/1/?next=/fleet/%3Fx%3D1"


def test_no_redirect_field_name_sends_no_next():
    class View_(_Tokens):
        redirect_field_name = None

    assert _anonymous_get(View_)["Location"] == "/accounts/login/"


def test_login_page_on_another_site_gets_an_absolute_next():
    class View_(_Tokens):
        login_url = "https://login.example.com/"

    location = _anonymous_get(View_)["Location"]
    assert location == "https://login.example.com/?next=http%3A//testserver/fleet/%3Fx%3D1"


def test_missing_login_url_is_a_configuration_error(settings):
    settings.LOGIN_URL = None
    with pytest.raises(ImproperlyConfigured, match="login_url"):
        _anonymous_get(_Tokens)


def test_every_mixin_offers_the_attributes():
    # TokenRequiredMixin sends anonymous users to the SSO, but the hooks are there to use.
    assert TokenRequiredMixin.redirect_field_name == "next"
    assert TokenRequiredMixin.login_url is None
    assert callable(TokenRequiredMixin.get_login_url)
