"""A small API covering every way to use esi_drf: APIView, ViewSet with per-action scopes,
``@api_view``, composed permissions; each endpoint reports what it was handed."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers, viewsets
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from esi_drf.authentication import EveAccessToken
from esi_drf.permissions import HasESIToken, HasESITokens
from esi_views.models import Token

SKILLS = "esi-skills.read_skills.v1"
WALLET = "esi-wallet.read_character_wallet.v1"


class Handed(serializers.Serializer):
    """What the endpoint was handed (for the tests, and a non-empty schema)."""

    via = serializers.ChoiceField(["bearer", "session", "anonymous"])
    user = serializers.IntegerField(allow_null=True)
    character = serializers.IntegerField(allow_null=True)
    token = serializers.IntegerField(allow_null=True, help_text="Stored Token id, if any.")
    characters = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    access_token = serializers.CharField(allow_null=True)


def handed(request) -> dict:
    token = getattr(request, "esi_token", None)
    tokens = getattr(request, "esi_tokens", None)
    bearer = isinstance(request.auth, EveAccessToken)
    return {
        "via": "bearer" if bearer else "session" if request.user.is_authenticated else "anonymous",
        "user": request.user.pk,
        "character": token.character_id if token is not None else None,
        "token": token.pk if isinstance(token, Token) else None,
        "characters": sorted(t.character_id for t in tokens) if tokens is not None else None,
        "access_token": token.valid_access_token() if token is not None else None,
    }


class _Reporting(APIView):
    @extend_schema(responses=Handed)
    def get(self, request):
        return Response(handed(request))


class SkillsView(_Reporting):
    permission_classes = [HasESIToken]
    required_scopes = SKILLS


class WalletView(_Reporting):
    permission_classes = [HasESIToken.with_scopes(WALLET)]


class AllTokensView(_Reporting):
    permission_classes = [HasESITokens]
    required_scopes = [SKILLS]


class PlainView(_Reporting):
    permission_classes = [IsAuthenticated]


class AndView(_Reporting):
    permission_classes = [IsAuthenticated & HasESIToken.with_scopes(SKILLS)]


class OrView(_Reporting):
    """Admins without a wallet token, or anyone with one."""

    permission_classes = [IsAdminUser | HasESIToken.with_scopes(WALLET)]


class NotView(_Reporting):
    """Onboarding: only for users who have not given the wallet scope yet."""

    permission_classes = [IsAuthenticated & ~HasESIToken.with_scopes(WALLET)]


class CharacterViewSet(viewsets.ViewSet):
    """Per-action scopes: listing needs skills, one character's detail also the wallet."""

    permission_classes = [HasESIToken]
    required_scopes = {"list": SKILLS, "retrieve": f"{SKILLS} {WALLET}"}

    def get_required_scopes(self):
        return self.required_scopes.get(self.action, SKILLS)

    @extend_schema(responses=Handed)
    def list(self, request):
        return Response(handed(request))

    @extend_schema(responses=Handed, parameters=[OpenApiParameter("id", int, "path")])
    def retrieve(self, request, pk=None):
        return Response(handed(request))


@extend_schema(responses=Handed)
@api_view(["GET"])
@permission_classes([HasESIToken.with_scopes(SKILLS)])
def skills_function(request):
    return Response(handed(request))


@extend_schema_view(get=extend_schema(exclude=True))
class SchemaView(SpectacularAPIView):
    """The served schema (not itself part of it)."""


router = SimpleRouter()
router.register("characters", CharacterViewSet, basename="character")

urlpatterns = [
    path("skills/", SkillsView.as_view()),
    path("wallet/", WalletView.as_view()),
    path("tokens/", AllTokensView.as_view()),
    path("plain/", PlainView.as_view()),
    path("composed/and/", AndView.as_view()),
    path("composed/or/", OrView.as_view()),
    path("composed/not/", NotView.as_view()),
    path("fn/skills/", skills_function),
    path("", include(router.urls)),
    path("schema/", SchemaView.as_view(), name="schema"),
]
