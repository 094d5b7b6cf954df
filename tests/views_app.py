"""Protected views in four forms, mixin and decorator, sync and async, reporting what they
received."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import path
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from esi_views.decorators import single_use_token, token_required, tokens_required
from esi_views.mixins import SingleUseTokenMixin, TokenRequiredMixin, TokensRequiredMixin

SCOPES = "esi-skills.read_skills.v1 esi-wallet.read_character_wallet.v1"


def describe(request, token=None, tokens=None, *args, **kwargs):
    form = {k: v for k, v in request.POST.lists() if k != "csrfmiddlewaretoken"}
    return JsonResponse(
        {
            **({"form": form} if form else {}),
            "method": request.method,
            "token": token.pk if token else None,
            "character": token.character_id if token else None,
            "user": token.user_id if token else None,
            "tokens": sorted(t.character_id for t in tokens) if tokens is not None else None,
            "args": list(args),
            "kwargs": kwargs,
        }
    )


class _Describe(View):
    def get(self, request, *args, **kwargs):
        return describe(
            request, getattr(self, "token", None), getattr(self, "tokens", None), *args, **kwargs
        )

    post = get


class _AsyncDescribe(View):
    async def get(self, request, *args, **kwargs):
        # Reads only what the mixin already evaluated: any query here would raise
        # SynchronousOnlyOperation in the event loop.
        return describe(
            request, getattr(self, "token", None), getattr(self, "tokens", None), *args, **kwargs
        )

    post = get


class TokenView(TokenRequiredMixin, _Describe):
    scopes = SCOPES


class NewTokenView(TokenRequiredMixin, _Describe):
    scopes = SCOPES
    new_token = True


class TokensView(TokensRequiredMixin, _Describe):
    scopes = SCOPES


class NewTokensView(TokensRequiredMixin, _Describe):
    scopes = SCOPES
    new_token = True


class SingleUseView(SingleUseTokenMixin, _Describe):
    scopes = ["publicData"]


class AsyncTokenView(TokenRequiredMixin, _AsyncDescribe):
    scopes = SCOPES


class AsyncNewTokenView(TokenRequiredMixin, _AsyncDescribe):
    scopes = SCOPES
    new_token = True


class AsyncTokensView(TokensRequiredMixin, _AsyncDescribe):
    scopes = SCOPES


class AsyncNewTokensView(TokensRequiredMixin, _AsyncDescribe):
    scopes = SCOPES
    new_token = True


class AsyncSingleUseView(SingleUseTokenMixin, _AsyncDescribe):
    scopes = ["publicData"]


@token_required(scopes=SCOPES)
def token_view(request, token, *args, **kwargs):
    """Reports its token."""
    return describe(request, token, None, *args, **kwargs)


@token_required(scopes=SCOPES.split(), new=True)
def new_token_view(request, token, *args, **kwargs):
    return describe(request, token, None, *args, **kwargs)


@tokens_required(scopes=SCOPES)
def tokens_view(request, tokens, *args, **kwargs):
    return describe(request, None, tokens, *args, **kwargs)


@tokens_required(scopes=SCOPES, new=True)
def new_tokens_view(request, tokens, *args, **kwargs):
    return describe(request, None, tokens, *args, **kwargs)


@single_use_token(scopes=["publicData"])
def single_use_view(request, token, *args, **kwargs):
    return describe(request, token, None, *args, **kwargs)


@token_required(scopes=SCOPES)
async def async_token_view(request, token, *args, **kwargs):
    """Reports its token, asynchronously."""
    return describe(request, token, None, *args, **kwargs)


@token_required(scopes=SCOPES.split(), new=True)
async def async_new_token_view(request, token, *args, **kwargs):
    return describe(request, token, None, *args, **kwargs)


@tokens_required(scopes=SCOPES)
async def async_tokens_view(request, tokens, *args, **kwargs):
    return describe(request, None, tokens, *args, **kwargs)


@tokens_required(scopes=SCOPES, new=True)
async def async_new_tokens_view(request, tokens, *args, **kwargs):
    return describe(request, None, tokens, *args, **kwargs)


@single_use_token(scopes=["publicData"])
async def async_single_use_view(request, token, *args, **kwargs):
    return describe(request, token, None, *args, **kwargs)


def add_character(request):
    """As django-esi apps call it: esi.views.sso_redirect -> esi_views.views.sso_redirect."""
    from esi_views.views import sso_redirect

    return sso_redirect(request, scopes=SCOPES, return_to="/v/added/")


VIEWS = {
    "mixin": {
        "token": TokenView.as_view(),
        "new_token": NewTokenView.as_view(),
        "tokens": TokensView.as_view(),
        "new_tokens": NewTokensView.as_view(),
        "single_use": SingleUseView.as_view(),
    },
    "decorator": {
        "token": token_view,
        "new_token": new_token_view,
        "tokens": tokens_view,
        "new_tokens": new_tokens_view,
        "single_use": single_use_view,
    },
    "async_mixin": {
        "token": AsyncTokenView.as_view(),
        "new_token": AsyncNewTokenView.as_view(),
        "tokens": AsyncTokensView.as_view(),
        "new_tokens": AsyncNewTokensView.as_view(),
        "single_use": AsyncSingleUseView.as_view(),
    },
    "async_decorator": {
        "token": async_token_view,
        "new_token": async_new_token_view,
        "tokens": async_tokens_view,
        "new_tokens": async_new_tokens_view,
        "single_use": async_single_use_view,
    },
}
# The forms that run in the event loop (tests drive them with Django's AsyncClient).
ASYNC_FORMS = ("async_mixin", "async_decorator")

urlpatterns = [
    path(f"{form}/{name}/<int:number>/", view, name=f"{form}-{name}")
    for form, views in VIEWS.items()
    for name, view in views.items()
] + [
    # Paths that need escaping in a URL ("a b", "café").
    path("named/single_use/<str:name>/", VIEWS["mixin"]["single_use"]),
    path("named/token/<str:name>/", VIEWS["decorator"]["token"]),
    path("async_named/single_use/<str:name>/", VIEWS["async_mixin"]["single_use"]),
    path("async_named/token/<str:name>/", VIEWS["async_decorator"]["token"]),
    path("add-character/", add_character),
    path("exempt/token/", csrf_exempt(VIEWS["decorator"]["token"])),
]
