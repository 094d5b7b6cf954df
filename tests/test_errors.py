"""One hierarchy: django-esi's names (esi_views.errors) are our classes' parents, so code
written against django-esi catches what it caught there; get_token; telling "no usable
token" from "SSO down"."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from esi_views import errors, exceptions
from esi_views.errors import (
    DjangoEsiException,
    IncompleteResponseError,
    NotRefreshableTokenError,
    SSOOAuthError,
    SSOUnavailableError,
    TokenError,
    TokenExpiredError,
    TokenInvalidError,
)
from esi_views.exceptions import (
    EsiError,
    FlowError,
    InvalidGrantError,
    InvalidJWTError,
    NoRefreshTokenError,
    SSOTransientError,
)
from esi_views.models import Token

SKILLS = "esi-skills.read_skills.v1"
MAIL = "esi-mail.read_mail.v1"


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("errors")


def _expire(token: Token) -> None:
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    token.refresh_from_db()


# -- the hierarchy ------------------------------------------------------------------------------


def test_errors_module_has_exactly_django_esis_names():
    # django-esi 10's esi/errors.py defines these eight classes.
    assert set(errors.__all__) == {
        "DjangoEsiException",
        "TokenError",
        "TokenInvalidError",
        "TokenExpiredError",
        "NotRefreshableTokenError",
        "IncompleteResponseError",
        "SSOUnavailableError",
        "SSOOAuthError",
    }
    for name in errors.__all__:
        assert getattr(errors, name) is getattr(exceptions, name)  # the same classes


def test_django_esis_own_hierarchy_holds():
    assert DjangoEsiException is EsiError
    for cls in (TokenInvalidError, TokenExpiredError, NotRefreshableTokenError):
        assert issubclass(cls, TokenError)
    assert issubclass(SSOUnavailableError, IncompleteResponseError)
    for cls in (TokenError, IncompleteResponseError, SSOOAuthError):
        assert issubclass(cls, DjangoEsiException)


def test_every_exception_of_the_package_is_an_esi_error():
    from esi_drf import exceptions as drf_exceptions
    from esi_views import crypto, flow, ratelimit, redis_scripts, refresh

    classes = [
        obj
        for module in (exceptions, crypto, flow, ratelimit, redis_scripts, refresh, drf_exceptions)
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith(("esi_views", "esi_drf"))
    ]
    assert len(classes) > 30
    assert [c for c in classes if not issubclass(c, EsiError)] == []
    assert flow.FlowError is FlowError


def test_invalid_jwts_are_their_own_family():
    for transient in (SSOTransientError, SSOUnavailableError, IncompleteResponseError, TokenError):
        assert not issubclass(InvalidJWTError, transient)
    assert issubclass(exceptions.SSOInvalidAnswerError, SSOTransientError)


def test_oauth_errors_are_built_as_in_django_esi():
    error = SSOOAuthError("invalid_scope", "no such scope")
    assert (error.error, error.description) == ("invalid_scope", "no such scope")
    dead = InvalidGrantError(error="invalid_grant", status=400)
    assert isinstance(dead, SSOOAuthError) and isinstance(dead, TokenInvalidError)
    assert isinstance(exceptions.InvalidClientError(error="invalid_client"), ImproperlyConfigured)
    assert issubclass(exceptions.SSORejectedError, IncompleteResponseError)


def test_no_refresh_token_is_caught_by_each_django_esi_name():
    for cls in (NotRefreshableTokenError, TokenExpiredError, TokenError):
        assert issubclass(NoRefreshTokenError, cls)


def test_flow_error_takes_its_data_as_arguments():
    error = FlowError(403, "Nope", "Not yours.")
    assert (error.status, error.title, error.message) == (403, "Nope", "Not yours.")


# -- what code written for django-esi catches, for real ------------------------------------------


def test_a_dead_token_is_a_token_invalid_error(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    fake_sso.revoke_all(token.character_id)
    with pytest.raises(TokenInvalidError):
        token.valid_access_token()
    assert not Token.objects.filter(pk=token.pk).exists()


def test_an_sso_outage_is_sso_unavailable_and_keeps_the_token(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    fake_sso.inject("server_error", times=None)
    with pytest.raises(SSOUnavailableError) as caught:
        token.valid_access_token()
    assert isinstance(caught.value, IncompleteResponseError)
    assert not isinstance(caught.value, TokenError)  # not "your token is bad"
    assert Token.objects.filter(pk=token.pk).exists()


def test_no_refresh_token_is_not_refreshable(esi_token, user):
    token = esi_token(user)
    Token.objects.filter(pk=token.pk).update(refresh_token="")
    token.refresh_from_db()
    _expire(token)
    with pytest.raises(NotRefreshableTokenError):
        token.valid_access_token()


def test_an_invalid_client_is_improperly_configured_not_a_token_error(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    fake_sso.inject("invalid_client")
    with pytest.raises(ImproperlyConfigured) as caught:
        token.valid_access_token()
    assert not isinstance(caught.value, TokenError)
    assert Token.objects.filter(pk=token.pk).exists()


# -- Token.get_token -----------------------------------------------------------------


def test_get_token_returns_a_matching_token_or_false(esi_token, user):
    token = esi_token(user, character_id=90000011, scopes=[SKILLS, MAIL])
    assert Token.get_token(90000011, [SKILLS]) == token
    assert Token.get_token(90000011, [SKILLS, MAIL]) == token
    assert Token.get_token(90000011, []) == token
    assert Token.get_token(90000011, ["esi-wallet.read_character_wallet.v1"]) is False
    assert Token.get_token(90000012, [SKILLS]) is False


def test_get_token_does_not_refresh_like_django_esi(esi_token, user, fake_sso):
    token = esi_token(user, character_id=90000013, scopes=[SKILLS])
    _expire(token)
    before = fake_sso.calls["token:refresh_token"]
    assert Token.get_token(90000013, [SKILLS]) == token
    assert fake_sso.calls["token:refresh_token"] == before


# -- "no usable token" vs "SSO down" with the chains apps use ---------------------


def _chain(character_id: int, **kwargs):
    return (
        Token.objects.filter(character_id=character_id)
        .require_scopes([SKILLS])
        .require_valid(**kwargs)
        .first()
    )


def test_chain_answers_none_as_before_and_raises_only_on_opt_in(esi_token, user, fake_sso):
    token = esi_token(user, character_id=90000021, scopes=[SKILLS])
    _expire(token)
    fake_sso.inject("server_error", times=None)
    assert _chain(90000021) is None  # unchanged for apps that do not ask
    with pytest.raises(SSOUnavailableError):
        _chain(90000021, raise_if_unavailable=True)
    assert Token.objects.filter(pk=token.pk).exists()


def test_opt_in_chain_answers_none_when_there_is_just_no_token(esi_token, user, fake_sso):
    token = esi_token(user, character_id=90000022, scopes=[SKILLS])
    assert _chain(90000099, raise_if_unavailable=True) is None  # none at all
    _expire(token)
    fake_sso.revoke_all(90000022)
    assert _chain(90000022, raise_if_unavailable=True) is None  # dead: deleted, not raised
    assert not Token.objects.filter(pk=token.pk).exists()


def test_opt_in_chain_hands_over_a_usable_token_despite_an_outage(esi_token, user, fake_sso):
    fresh = esi_token(user, character_id=90000023, scopes=[SKILLS])
    stale = esi_token(user, character_id=90000023, scopes=[SKILLS, MAIL])
    _expire(stale)
    fake_sso.inject("server_error", times=None)
    assert _chain(90000023, raise_if_unavailable=True) == fresh
