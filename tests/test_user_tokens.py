"""A user's usable tokens on TokenQuerySet (for_user, usable_by, selectable_by, valid_tokens),
and the module structure around them: no import cycles among models, querysets and
refresh; esi_drf never imports the web flow."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from esi_views.exceptions import SSOUnavailableError
from esi_views.models import Token
from esi_views.querysets import ValidTokens

SKILLS, MAIL = "esi-skills.read_skills.v1", "esi-mail.read_mail.v1"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("owner")


def _expire(*tokens: Token) -> None:
    Token.objects.filter(pk__in=[t.pk for t in tokens]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )


# -- for_user / usable_by / selectable_by ---------------------------------------------------


def test_for_user_lists_only_this_users_tokens_with_the_scopes_newest_first(
    esi_token, user, fake_sso
):
    other = get_user_model().objects.create_user("other")
    older = esi_token(user, character_id=90005001, scopes=[SKILLS, MAIL])
    newer = esi_token(user, character_id=90005002, scopes=[SKILLS])
    esi_token(user, character_id=90005003, scopes=[MAIL])  # lacks SKILLS
    esi_token(other, character_id=90005004, scopes=[SKILLS])
    esi_token(None, character_id=90005005, scopes=[SKILLS])  # nobody's: never listed
    Token.objects.filter(pk=older.pk).update(updated=timezone.now() - timedelta(hours=1))
    assert list(Token.objects.for_user(user, SKILLS)) == [newer, older]
    assert list(Token.objects.for_user(user, SKILLS, character_id=90005001)) == [older]
    assert list(Token.objects.for_user(user, SKILLS, character_id=90005004)) == []


@pytest.mark.parametrize("anonymous", [None, AnonymousUser()])
def test_anonymous_users_have_no_tokens(esi_token, fake_sso, anonymous):
    esi_token(None, character_id=90005006, scopes=[SKILLS])
    assert list(Token.objects.for_user(anonymous, SKILLS)) == []
    assert Token.objects.selectable_by(anonymous, SKILLS) == []


def test_usable_by_comes_evaluated(esi_token, user, fake_sso, django_assert_num_queries):
    esi_token(user, character_id=90005007, scopes=[SKILLS])
    with django_assert_num_queries(1):
        tokens = Token.objects.usable_by(user, SKILLS)
    with django_assert_num_queries(0):
        assert [t.character_id for t in tokens] == [90005007]


def test_selectable_by_lists_one_token_per_character_by_name(esi_token, user, fake_sso):
    esi_token(user, character_id=90005010, character_name="Zed", scopes=[SKILLS])
    first = esi_token(user, character_id=90005011, character_name="anna", scopes=[SKILLS])
    second = esi_token(user, character_id=90005011, character_name="anna", scopes=[SKILLS, MAIL])
    Token.objects.filter(pk=first.pk).update(updated=timezone.now() - timedelta(hours=1))
    listed = Token.objects.selectable_by(user, SKILLS)
    assert [t.character_name for t in listed] == ["anna", "Zed"]
    assert listed[0].pk == second.pk  # the most recently refreshed of anna's two


# -- valid_tokens: outcomes returned, not stashed -------------------------------------------


def test_valid_tokens_returns_the_report_with_the_tokens(esi_token, user, fake_sso):
    good = esi_token(user, character_id=90005020, scopes=[SKILLS])
    stuck = esi_token(user, character_id=90005021, scopes=[SKILLS])
    _expire(stuck)
    fake_sso.inject("server_error", status=503, times=None)
    found = Token.objects.for_user(user, SKILLS).valid_tokens()
    assert isinstance(found, ValidTokens)
    assert list(found.tokens) == [good]
    assert [t.pk for t, _ in found.report.transient] == [stuck.pk]
    assert len(found.unavailable) == 1 and not found.sso_unavailable  # one is usable
    found.raise_if_unavailable()  # a usable token: nothing raised
    # The result is an ordinary queryset: filtering it goes on as usual.
    assert list(found.tokens.filter(character_id=90005020)) == [good]
    assert Token.objects.filter(pk=stuck.pk).exists()  # kept for later


def test_valid_tokens_tells_sso_down_from_no_token(esi_token, user, fake_sso):
    assert not Token.objects.for_user(user, SKILLS).valid_tokens().sso_unavailable
    token = esi_token(user, character_id=90005030, scopes=[SKILLS])
    _expire(token)
    fake_sso.inject("rate_limited", retry_after=42, times=None)
    found = Token.objects.for_user(user, SKILLS).valid_tokens()
    assert found.sso_unavailable and not found.tokens
    assert found.retry_after == 42
    with pytest.raises(SSOUnavailableError):
        found.raise_if_unavailable()
    with pytest.raises(SSOUnavailableError):
        Token.objects.for_user(user, SKILLS).require_valid(raise_if_unavailable=True)


def test_require_valid_hands_back_refreshed_rows_without_querying_again(
    esi_token, user, fake_sso, django_assert_num_queries
):
    tokens = [esi_token(user, character_id=90005040 + i, scopes=[SKILLS]) for i in range(3)]
    _expire(*tokens)
    result = Token.objects.filter(user=user).order_by("character_id").require_valid()
    with django_assert_num_queries(0):
        rows = list(result)
    assert [t.character_id for t in rows] == [90005040, 90005041, 90005042]
    assert all(not t.expired for t in rows)  # the refreshed values, on the rows handed back
    assert {t.access_token for t in rows} == {
        t.access_token for t in Token.objects.filter(user=user)
    }


def test_require_valid_does_not_touch_queryset_internals():
    source = (ROOT / "esi_views" / "querysets.py").read_text()
    for internal in ("_result_cache", "_prefetch_done", "refresh_failures"):
        assert internal not in source, internal


# -- structure -------------------------------------------------------------------------------


def _runtime_imports(path: Path) -> set[str]:
    """The esi_views modules ``path`` imports at run time (anywhere but TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1:  # from .x import y / from . import x
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found.update(f"esi_views.{name.split('.')[0]}" for name in names)
        elif node.module and node.module.startswith("esi_views"):
            found.add(".".join(node.module.split(".")[:2]))
    return found


def test_models_querysets_and_refresh_import_no_cycle():
    trio = {
        name: _runtime_imports(ROOT / "esi_views" / f"{name}.py")
        for name in ("models", "querysets", "refresh")
    }
    edges = {(a, b) for a, imports in trio.items() for b in trio if f"esi_views.{b}" in imports}
    assert ("models", "querysets") in edges  # Token.objects is built from TokenQuerySet
    assert not {(b, a) for a, b in edges} & edges, edges  # nothing imports back
    assert edges <= {("models", "querysets"), ("models", "refresh"), ("querysets", "refresh")}


def test_esi_drf_does_not_import_the_web_flow():
    for path in (ROOT / "esi_drf").glob("*.py"):
        assert "esi_views.flow" not in _runtime_imports(path), path.name
        assert "from esi_views import flow" not in path.read_text(), path.name
