"""esi_views.testing.factories in a plain django.test.TestCase: no pytest fixture, no
HTTP, no fake SSO (ESI_SSO_BASE_URL points at a closed port in tests.settings, so any
SSO call would fail these tests)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

from esi_views.errors import TokenError
from esi_views.jwks import clear_jwks_cache
from esi_views.models import Scope, Token
from esi_views.testing.factories import make_access_token, make_scopes, make_token

SKILLS = "esi-skills.read_skills.v1"
WALLET = "esi-wallet.read_character_wallet.v1"


class FactoryTokensInAPlainTestCase(TestCase):
    def setUp(self):
        clear_jwks_cache()  # nothing left over from other tests: the factory installs keys
        self.user = get_user_model().objects.create_user("pilot", password="pw")

    def test_a_token_with_scopes_for_a_user(self):
        token = make_token(self.user, scopes=[SKILLS, WALLET])
        self.assertEqual(token.user, self.user)
        self.assertFalse(token.expired)
        self.assertEqual(token.valid_access_token(), token.access_token)  # no SSO call
        self.assertEqual(
            list(Token.objects.filter(user=self.user).require_scopes(SKILLS).require_valid()),
            [token],
        )
        self.assertEqual(Token.get_token(token.character_id, [SKILLS]), token)
        other = make_token(self.user, scopes=SKILLS)
        self.assertNotEqual(other.character_id, token.character_id)

    def test_the_access_token_verifies_like_a_real_one(self):
        from esi_views.access_tokens import verify_access_token

        token = make_token(self.user, character_id=95123456, character_name="Ann", scopes=SKILLS)
        claims = verify_access_token(token.access_token)
        self.assertEqual((claims.character_id, claims.character_name), (95123456, "Ann"))
        self.assertEqual(claims.scopes, {SKILLS})
        self.assertEqual(claims.owner_hash, token.character_owner_hash)

    def test_a_protected_view_hands_the_token_over(self):
        token = make_token(self.user, scopes=[SKILLS, WALLET])
        self.client.login(username="pilot", password="pw")
        answer = self.client.get("/v/decorator/tokens/1/")
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(answer.json()["tokens"], [token.character_id])

    def test_drf_accepts_the_access_token_as_a_bearer(self):
        token = make_token(self.user, character_id=95000999, scopes=[SKILLS])
        answer = self.client.get("/api/skills/", HTTP_AUTHORIZATION=f"Bearer {token.access_token}")
        self.assertEqual(answer.status_code, 200, answer.content)
        self.assertEqual(answer.json()["character"], 95000999)
        # A JWT made for a character nobody here holds is verified, then refused (401).
        stranger = make_access_token(95000998, scopes=[SKILLS])
        answer = self.client.get("/api/skills/", HTTP_AUTHORIZATION=f"Bearer {stranger}")
        self.assertEqual(answer.status_code, 401)

    def test_an_expired_unrefreshable_token_is_a_token_error(self):
        token = make_token(self.user, scopes=SKILLS, expired=True, refreshable=False)
        self.assertTrue(token.expired)
        with self.assertRaises(TokenError):
            token.valid_access_token()

    def test_scopes(self):
        scopes = make_scopes(SKILLS, WALLET, SKILLS)
        self.assertEqual([s.name for s in scopes], [SKILLS, WALLET])
        self.assertEqual(Scope.objects.count(), 2)
        self.assertEqual(scopes[0].friendly_name, "read_skills")
