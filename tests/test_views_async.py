"""Async views: marked async, and the token flow never runs in the event loop.

The parity of every behaviour with the sync views is in test_views_flow.py,
test_views_hostile.py and test_views_budget_and_config.py (each runs the async forms
too); tests/test_asgi_server.py runs them behind uvicorn.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import AsyncRequestFactory
from django.views import View

from esi_views import mixins
from esi_views.decorators import token_required
from esi_views.mixins import SingleUseTokenMixin, TokenRequiredMixin
from tests.views_app import ASYNC_FORMS, VIEWS


@pytest.mark.parametrize("form", list(VIEWS))
def test_async_views_are_marked_async_and_sync_ones_not(form):
    for view in VIEWS[form].values():
        assert iscoroutinefunction(view) == (form in ASYNC_FORMS), view
        assert view.view_class.view_is_async == (form in ASYNC_FORMS)


def test_the_decorator_keeps_an_async_functions_metadata():
    from tests.views_app import async_token_view

    assert async_token_view.__name__ == "async_token_view"
    assert async_token_view.__doc__ == "Reports its token, asynchronously."
    assert iscoroutinefunction(async_token_view.__wrapped__)


def test_mixing_sync_and_async_handlers_is_refused_like_django_does():
    class Mixed(TokenRequiredMixin, View):
        def get(self, request):
            return HttpResponse()

        async def post(self, request):
            return HttpResponse()

    with pytest.raises(ImproperlyConfigured, match="must either be all sync or all async"):
        Mixed.as_view()


def test_the_flow_runs_in_one_hop_off_the_event_loop(db, fake_sso, monkeypatch):
    """The hooks block until the event loop has run another coroutine: if the flow ran
    in the loop, that coroutine could not run and the wait would time out."""
    seen: list[tuple[str, int]] = []
    loop_ran = threading.Event()
    hops = []

    def counting_sync_to_async(func, *args, **kwargs):
        hops.append(func)
        return sync_to_async(func, *args, **kwargs)

    monkeypatch.setattr(mixins, "sync_to_async", counting_sync_to_async)

    class Probe(SingleUseTokenMixin, View):
        scopes = "publicData"

        def get_scopes(self):
            seen.append(("get_scopes", threading.get_ident()))
            return super().get_scopes()

        def handle_no_token(self):
            seen.append(("handle_no_token", threading.get_ident()))
            released = loop_ran.wait(timeout=20)
            response = super().handle_no_token()
            response["X-Loop-Ran-Meanwhile"] = str(released)
            return response

        async def get(self, request):
            raise AssertionError("no token yet: the view must not run")

    async def scenario():
        request = AsyncRequestFactory().get("/probe/")
        request.user, request.session = AnonymousUser(), SessionStore()

        async def release_once_the_flow_waits():
            while not any(name == "handle_no_token" for name, _ in seen):
                await asyncio.sleep(0.01)
            loop_ran.set()

        response, _ = await asyncio.gather(Probe.as_view()(request), release_once_the_flow_waits())
        return threading.get_ident(), response

    loop_thread, response = async_to_sync(scenario)()
    assert response.status_code == 302 and response["Location"].startswith(fake_sso.base_url)
    assert response["X-Loop-Ran-Meanwhile"] == "True"
    assert {name for name, _ in seen} == {"get_scopes", "handle_no_token"}
    assert {ident for _, ident in seen} != {loop_thread}
    assert len(hops) == 1  # one hop for the whole flow, not one per query


def test_an_async_view_gets_its_token_without_touching_the_database(db, fake_sso, esi_token):
    """The view body runs in the loop: reading self.token/tokens must not query
    (Django would raise SynchronousOnlyOperation), so the flow hands them over evaluated."""
    from django.contrib.auth import get_user_model

    from tests.browserless import client_for
    from tests.views_app import SCOPES

    user = get_user_model().objects.create_user("async-reader")
    esi_token(user, character_id=90003001, scopes=SCOPES)
    esi_token(user, character_id=90003002, scopes=SCOPES)
    client = client_for("async_mixin")
    client.force_login(user)
    answer = client.get("/v/async_mixin/tokens/1/")
    assert answer.status_code == 200 and answer.json()["tokens"] == [90003001, 90003002]


def test_an_async_decorated_view_can_use_the_orm_with_its_own_hops(db, fake_sso, esi_token):
    """A view that needs more than the token uses Django's async ORM as usual."""
    from django.contrib.auth import get_user_model
    from django.http import JsonResponse
    from django.test import override_settings
    from django.urls import path

    from tests.browserless import client_for, follow, to_sso_and_back
    from tests.urls import urlpatterns

    @token_required(scopes="publicData")
    async def scopes_of_token(request, token):
        names = [scope.name async for scope in token.scopes.all()]
        return JsonResponse({"scopes": names})

    fake_sso.add_character(90003003, "Async Pilot")
    fake_sso.select_character(90003003)
    user = get_user_model().objects.create_user("async-orm")
    client = client_for("async_decorator")
    client.force_login(user)
    urls = type("urls", (), {"urlpatterns": [path("s/", scopes_of_token), *urlpatterns]})
    with override_settings(ROOT_URLCONF=urls):
        back = to_sso_and_back(client, client.get("/s/"), fake_sso)
        assert follow(client, back).json() == {"scopes": ["publicData"]}
