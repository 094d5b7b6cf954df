"""The same four views protected by django-esi 10's decorators and by ours."""

from django.http import HttpResponse
from django.urls import include, path
from esi import decorators as theirs

from esi_views import decorators as ours

SCOPES = "esi-skills.read_skills.v1 esi-wallet.read_character_wallet.v1"


def _one(request, token):
    return HttpResponse(token.character_name)


def _many(request, tokens):
    return HttpResponse(",".join(t.character_name for t in tokens))


urlpatterns = [
    path("sso/", include("esi.urls")),
    path("esi/", include("esi_views.urls")),
    path("theirs/token/", theirs.token_required(scopes=SCOPES)(_one)),
    path("theirs/tokens/", theirs.tokens_required(scopes=SCOPES)(_many)),
    path("ours/token/", ours.token_required(scopes=SCOPES)(_one)),
    path("ours/tokens/", ours.tokens_required(scopes=SCOPES)(_many)),
]
