"""Token storage: encryption at rest, the TokenQuerySet API and create_from_code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from esi_views.crypto import TokenDecryptionError
from esi_views.models import CallbackRedirect, Scope, Token

pytestmark = pytest.mark.django_db

SKILLS, WALLET, ASSETS = (
    "esi-skills.read_skills.v1",
    "esi-wallet.read_character_wallet.v1",
    "esi-assets.read_assets.v1",
)


@pytest.fixture
def user():
    return get_user_model().objects.create_user("pilot")


@pytest.fixture
def other_user():
    return get_user_model().objects.create_user("someone-else")


# -- encryption at rest ------------------------------------------------------------------


def _raw_rows() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM esi_views_token")
        return repr(cursor.fetchall())


def test_secrets_are_never_stored_in_clear(esi_token, user):
    token = esi_token(user, scopes=[SKILLS])
    token.refresh_from_db()
    assert token.access_token.count(".") == 2 and token.refresh_token
    dump = _raw_rows()
    assert token.access_token not in dump
    assert token.refresh_token not in dump
    assert token.access_token.split(".")[1] not in dump  # not even the JWT payload


def test_keys_rotate_first_encrypts_all_decrypt(esi_token, user, settings):
    settings.ESI_TOKEN_ENCRYPTION_KEYS = ["old-key"]
    token = esi_token(user)
    plain = Token.objects.get(pk=token.pk).access_token
    settings.ESI_TOKEN_ENCRYPTION_KEYS = ["new-key", "old-key"]
    assert Token.objects.get(pk=token.pk).access_token == plain
    call_command("esi_rotate_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.ESI_TOKEN_ENCRYPTION_KEYS = ["new-key"]
    assert Token.objects.get(pk=token.pk).access_token == plain
    settings.ESI_TOKEN_ENCRYPTION_KEYS = ["old-key"]
    with pytest.raises(TokenDecryptionError, match="ESI_TOKEN_ENCRYPTION_KEYS"):
        Token.objects.get(pk=token.pk).access_token  # noqa: B018


def test_decryption_is_lazy_so_listing_tokens_needs_no_key(esi_token, user, settings):
    token = esi_token(user, character_name="Listed Pilot")
    settings.ESI_TOKEN_ENCRYPTION_KEYS = ["a-key-that-never-encrypted-anything"]
    listed = Token.objects.get(pk=token.pk)
    assert listed.character_name == "Listed Pilot"
    listed.save()  # an untouched secret is written back exactly as stored
    settings.ESI_TOKEN_ENCRYPTION_KEYS = None
    del settings.ESI_TOKEN_ENCRYPTION_KEYS
    assert Token.objects.get(pk=token.pk).access_token == token.access_token


def test_default_key_follows_secret_key_fallbacks(esi_token, user, settings):
    token = esi_token(user)
    plain = Token.objects.get(pk=token.pk).access_token
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key"
    assert Token.objects.get(pk=token.pk).access_token == plain


def test_callback_redirect_verifier_is_encrypted_too():
    CallbackRedirect.objects.create(
        session_hash="s", state="st", code_verifier="verifier-xyz", return_url="/"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT code_verifier FROM esi_views_callbackredirect")
        assert "verifier-xyz" not in repr(cursor.fetchall())
    assert CallbackRedirect.objects.get(state="st").code_verifier == "verifier-xyz"


# -- create_from_code ----------------------------------------------------------------------


def test_create_from_code_stores_what_the_jwt_says(esi_token, user, fake_sso):
    token = esi_token(
        user, character_id=90000010, character_name="Stored Pilot", scopes=f"{SKILLS} {WALLET}"
    )
    token.refresh_from_db()
    assert (token.character_id, token.character_name, token.user) == (
        90000010,
        "Stored Pilot",
        user,
    )
    character = next(c for c in fake_sso.characters if c.character_id == 90000010)
    assert token.character_owner_hash == character.owner_hash
    assert set(token.scopes.values_list("name", flat=True)) == {SKILLS, WALLET}
    assert token.expires_at - timezone.now() > timedelta(minutes=19)
    assert not token.expired and token.can_refresh
    assert token.token_type == Token.TokenType.CHARACTER


def test_equivalent_tokens_are_merged(esi_token, user):
    first = esi_token(user, scopes=[SKILLS])
    second = esi_token(user, scopes=[SKILLS])
    assert second.pk == first.pk
    assert Token.objects.count() == 1
    assert Token.objects.get().access_token == second.access_token


def test_merging_never_crosses_users_scopes_or_single_use(esi_token, user, other_user):
    esi_token(user, scopes=[SKILLS])
    esi_token(other_user, scopes=[SKILLS])
    esi_token(user, scopes=[SKILLS, WALLET])
    esi_token(None, scopes=[SKILLS])
    esi_token(None, scopes=[SKILLS])
    assert Token.objects.count() == 5


def test_always_create_token_setting(esi_token, user, settings):
    settings.ESI_ALWAYS_CREATE_TOKEN = True
    esi_token(user, scopes=[SKILLS])
    esi_token(user, scopes=[SKILLS])
    assert Token.objects.count() == 2


def test_character_changing_hands_removes_old_owners_tokens(esi_token, user, other_user, fake_sso):
    old = esi_token(user, character_id=90000020)
    fake_sso.change_owner(90000020)
    new = esi_token(other_user, character_id=90000020)
    assert list(Token.objects.values_list("pk", flat=True)) == [new.pk]
    assert not Token.objects.filter(pk=old.pk).exists()


# -- the queryset API -----------------------------------------------------------------------


@pytest.fixture
def three_tokens(esi_token, user):
    return (
        esi_token(user, character_id=90000031, scopes=[SKILLS]),
        esi_token(user, character_id=90000032, scopes=[SKILLS, WALLET]),
        esi_token(user, character_id=90000033, scopes=[]),
    )


def _ids(queryset) -> set[int]:
    return set(queryset.values_list("character_id", flat=True))


def test_require_scopes(three_tokens):
    tokens = Token.objects.all()
    assert _ids(tokens.require_scopes(SKILLS)) == {90000031, 90000032}
    assert _ids(tokens.require_scopes([SKILLS, WALLET])) == {90000032}
    assert _ids(tokens.require_scopes(f"{WALLET} {SKILLS}")) == {90000032}
    assert _ids(tokens.require_scopes(ASSETS)) == set()


@pytest.mark.parametrize("nothing", ["", None, [], " "])
def test_require_scopes_of_nothing_means_all_tokens(three_tokens, nothing):
    assert _ids(Token.objects.require_scopes(nothing)) == {90000031, 90000032, 90000033}


def test_require_scopes_exact(three_tokens):
    tokens = Token.objects.all()
    assert _ids(tokens.require_scopes_exact(SKILLS)) == {90000031}
    assert _ids(tokens.require_scopes_exact([WALLET, SKILLS])) == {90000032}
    assert _ids(tokens.require_scopes_exact("")) == {90000033}
    assert _ids(tokens.require_scopes_exact(WALLET)) == set()


def test_scope_filters_chain_with_other_filters(three_tokens, other_user, esi_token):
    esi_token(other_user, character_id=90000034, scopes=[SKILLS])
    mine = Token.objects.filter(user__username="pilot").require_scopes(SKILLS)
    assert _ids(mine) == {90000031, 90000032}
    assert mine.count() == 2
    assert _ids(Token.objects.require_scopes(SKILLS).exclude(character_id=90000031)) == {
        90000032,
        90000034,
    }


def test_equivalent_to_matches_character_owner_user_and_exact_scopes(esi_token, user, settings):
    settings.ESI_ALWAYS_CREATE_TOKEN = True
    a = esi_token(user, character_id=90000041, scopes=[SKILLS])
    b = esi_token(user, character_id=90000041, scopes=[SKILLS])
    esi_token(user, character_id=90000041, scopes=[SKILLS, WALLET])
    c = esi_token(user, character_id=90000042, scopes=[SKILLS])
    Token.objects.filter(pk=b.pk).update(character_owner_hash="someone-else=")
    assert list(Token.objects.equivalent_to(a)) == []
    d = esi_token(user, character_id=90000041, scopes=[SKILLS])
    assert set(Token.objects.equivalent_to(a)) == {d}
    assert c not in Token.objects.equivalent_to(a)


def test_get_expired(three_tokens):
    first = three_tokens[0]
    Token.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _ids(Token.objects.get_expired()) == {first.character_id}


def test_scope_friendly_name():
    assert Scope(name=SKILLS).friendly_name == "read_skills"
    assert Scope(name="publicData").friendly_name == "publicData"


def _bulk_fresh_tokens(user, count: int, scopes: list[str]) -> None:
    Scope.objects.bulk_create([Scope(name=n) for n in scopes], ignore_conflicts=True)
    scope_rows = list(Scope.objects.filter(name__in=scopes))
    expires = timezone.now() + timedelta(minutes=20)
    tokens = Token.objects.bulk_create(
        Token(
            user=user,
            character_id=91000000 + i,
            character_name=f"Alt {i}",
            character_owner_hash=f"hash{i}=",
            access_token="a.b.c",
            refresh_token="r",
            expires_at=expires,
        )
        for i in range(count)
    )
    link = Token.scopes.through
    link.objects.bulk_create(link(token_id=t.pk, scope_id=s.pk) for t in tokens for s in scope_rows)


def test_query_cost_is_constant_for_100_tokens(user):
    scopes = [SKILLS, WALLET, ASSETS, "esi-mail.read_mail.v1", "esi-clones.read_clones.v1"]
    _bulk_fresh_tokens(user, 100, scopes)
    with CaptureQueriesContext(connection) as queries:
        tokens = list(
            Token.objects.filter(user=user).require_scopes([SKILLS, WALLET]).require_valid()
        )
    assert len(tokens) == 100
    assert len(queries) <= 4, [q["sql"] for q in queries]
