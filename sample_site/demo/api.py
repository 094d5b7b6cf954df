"""The demo's API: esi_drf permissions, session and bearer clients alike."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from esi_drf.authentication import EveAccessToken
from esi_drf.permissions import HasESIToken, HasESITokens
from esi_views.accounts import merge_tokens
from esi_views.links import portrait_url

WALLET_SCOPE = "esi-wallet.read_character_wallet.v1"


class CharacterSerializer(serializers.Serializer):
    character_id = serializers.IntegerField()
    character_name = serializers.CharField()
    portrait = serializers.URLField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField()
    authenticated_via = serializers.ChoiceField(["bearer", "session"])


def _character(request, token) -> dict:
    bearer = isinstance(token, EveAccessToken)
    scopes = token.scopes if bearer else [s.name for s in token.scopes.all()]
    return {
        "character_id": token.character_id,
        "character_name": token.character_name,
        "portrait": portrait_url(token.character_id, 128),
        "scopes": sorted(scopes),
        "expires_at": token.expires_at,
        "authenticated_via": "bearer" if isinstance(request.auth, EveAccessToken) else "session",
    }


class MeView(APIView):
    """The character this request acts as (any token will do)."""

    permission_classes = [HasESIToken]
    required_scopes = ""

    @extend_schema(responses=CharacterSerializer)
    def get(self, request):
        return Response(CharacterSerializer(_character(request, request.esi_token)).data)


class WalletView(APIView):
    """Needs the wallet scope: 403 with a login link until one of your characters grants it."""

    permission_classes = [HasESIToken]
    required_scopes = WALLET_SCOPE

    @extend_schema(responses=CharacterSerializer)
    def get(self, request):
        # A real site would call ESI's wallet endpoint with
        # request.esi_token.valid_access_token(); the demo shows what it was handed.
        return Response(CharacterSerializer(_character(request, request.esi_token)).data)


class CharactersView(APIView):
    """Every character of yours (session), or the bearer token's character.

    One entry per character: several tokens of one character are merged (the union of
    their scopes, the latest expiry).
    """

    permission_classes = [HasESITokens]
    required_scopes = ""

    @extend_schema(responses=CharacterSerializer(many=True))
    def get(self, request):
        tokens = list(request.esi_tokens)
        if any(isinstance(t, EveAccessToken) for t in tokens):
            entries = [_character(request, t) for t in tokens]
        else:
            entries = [
                {
                    "character_id": row.character_id,
                    "character_name": row.name,
                    "portrait": portrait_url(row.character_id, 128),
                    "scopes": row.sorted_scopes,
                    "expires_at": row.expires_at,
                    "authenticated_via": "session",
                }
                for row in merge_tokens(tokens)
            ]
        return Response(CharacterSerializer(entries, many=True).data)
