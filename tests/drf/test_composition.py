"""``&``, ``|``, ``~`` with esi_drf permissions: DRF's semantics, our 403 explanation."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.permissions import (
    AND,
    AllowAny,
    BasePermission,
    IsAdminUser,
    IsAuthenticated,
    OperandHolder,
)
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from esi_drf.composition import AllOf, AnyOf, ESIPermissionMetaclass, NoneOf
from esi_drf.permissions import HasESIToken
from tests.drf.api import SKILLS, WALLET
from tests.drf.conftest import ALICE_MAIN
from tests.drf.test_permissions_session import assert_token_required

pytestmark = pytest.mark.django_db

GENERIC = "You do not have permission to perform this action."


# -- through the test API ---------------------------------------------------------------------


def test_and_explains_the_missing_token(alice, alice_client, esi_token, fake_sso):
    assert Client().get("/api/composed/and/").status_code == 401  # IsAuthenticated says no
    assert_token_required(alice_client.get("/api/composed/and/"), SKILLS)
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    assert alice_client.get("/api/composed/and/").json()["character"] == ALICE_MAIN


def test_or_lets_admins_in_and_explains_to_others(alice, alice_client, esi_token, fake_sso):
    admin = get_user_model().objects.create_user("admin", is_staff=True)
    admin_client = Client()
    admin_client.force_login(admin)
    body = admin_client.get("/api/composed/or/").json()
    assert body["user"] == admin.pk and body["character"] is None  # in without a token
    assert_token_required(alice_client.get("/api/composed/or/"), WALLET)
    esi_token(alice, character_id=ALICE_MAIN, scopes=WALLET)
    assert alice_client.get("/api/composed/or/").json()["character"] == ALICE_MAIN


def test_not_inverts_and_has_nothing_to_explain(alice, alice_client, esi_token):
    assert alice_client.get("/api/composed/not/").status_code == 200
    esi_token(alice, character_id=ALICE_MAIN, scopes=WALLET)
    response = alice_client.get("/api/composed/not/")
    assert response.status_code == 403
    assert response.json() == {"detail": GENERIC}


# -- the classes composition builds ----------------------------------------------------------


def test_esi_permission_on_the_right_still_builds_ours():
    # Python asks the right operand's metaclass first when it subclasses the left's.
    assert issubclass(IsAuthenticated & HasESIToken, AllOf)
    assert issubclass(IsAdminUser | HasESIToken, AnyOf)
    assert issubclass(IsAdminUser | (IsAuthenticated & HasESIToken), AnyOf)
    assert issubclass(~HasESIToken, NoneOf)
    assert (IsAuthenticated & HasESIToken).__name__ == "(IsAuthenticated & HasESIToken)"


def test_drf_only_composition_on_the_left_is_drfs(alice):
    """The documented limit: DRF builds this one; it still refuses, with DRF's message."""
    permission = (IsAuthenticated & AllowAny) | HasESIToken.with_scopes(SKILLS)
    assert isinstance(permission, OperandHolder)
    assert _status(~IsAuthenticated | HasESIToken.with_scopes(SKILLS), alice) == (403, GENERIC)
    assert _status(HasESIToken.with_scopes(SKILLS) | ~IsAuthenticated, alice)[0] == 403
    assert _status(HasESIToken.with_scopes(SKILLS) | ~IsAuthenticated, alice)[1]["code"] == (
        "esi_token_required"
    )


def _status(permission, user):
    class View(APIView):
        permission_classes = [permission]

        def get(self, request):
            return None

    request = APIRequestFactory().get("/")
    force_authenticate(request, user=user)
    response = View.as_view()(request)
    return response.status_code, response.data.get(
        "detail"
    ) if "code" not in response.data else response.data


class _PlainYes(BasePermission):
    def has_permission(self, request, view):
        return True

    def has_object_permission(self, request, view, obj):
        return obj == "mine"


class _PlainNo(BasePermission):
    message = "plain no"
    code = "plain"

    def has_permission(self, request, view):
        return False


# The same two, composed through our metaclass.
_Yes = ESIPermissionMetaclass("_Yes", (_PlainYes,), {})
_No = ESIPermissionMetaclass("_No", (_PlainNo,), {})


class _Explains(HasESIToken):
    def has_permission(self, request, view):
        self.message, self.code = {"detail": "esi no"}, "esi"
        return False


@pytest.mark.parametrize(
    "expression",
    [
        lambda y, n: y & y,
        lambda y, n: y & n,
        lambda y, n: n & y,
        lambda y, n: n | y,
        lambda y, n: n | n,
        lambda y, n: ~n,
        lambda y, n: ~y,
        lambda y, n: ~(y & n),
        lambda y, n: (n | y) & ~n,
        lambda y, n: ~(n | (y & n)),
    ],
)
def test_truth_table_matches_drf(expression):
    ours, drfs = expression(_Yes, _No), expression(_PlainYes, _PlainNo)
    assert issubclass(ours, (AllOf, AnyOf, NoneOf))
    for obj in ("mine", "theirs"):
        assert ours().has_permission(None, None) is drfs().has_permission(None, None)
        assert ours().has_object_permission(None, None, obj) is drfs().has_object_permission(
            None, None, obj
        )


def test_composition_chains_with_esi_on_either_side():
    combined = _Explains & _Yes
    assert issubclass(combined, AllOf)
    # A DRF-built holder as an operand of ours evaluates like DRF's own.
    with_drf_holder = _Explains | (_PlainYes & _PlainNo)
    instance = with_drf_holder()
    assert isinstance(instance.parts[1], AND)
    assert instance.has_permission(None, None) is False


def test_message_comes_from_the_operand_that_refused():
    both = (_No | _Explains)()
    assert both.has_permission(None, None) is False
    assert (both.message, both.code) == ({"detail": "esi no"}, "esi")  # the actionable one
    first = (_No & _Explains)()
    assert first.has_permission(None, None) is False
    assert (first.message, first.code) == ("plain no", "plain")
    granted = (_Yes & _Yes)()
    assert granted.has_permission(None, None) and granted.message is None
    assert (~_Explains)().message is None  # a refused "~P" means P granted: nothing to add


def test_object_permissions_compose_like_drf():
    assert (_Yes & _Yes)().has_object_permission(None, None, "mine") is True
    assert (_Yes & _Yes)().has_object_permission(None, None, "theirs") is False
    assert (_No | _Yes)().has_object_permission(None, None, "mine") is True
    # As DRF's OR: a part that refuses the request does not grant the object.
    assert (_No | _No)().has_object_permission(None, None, "mine") is False
    assert (~_Yes)().has_object_permission(None, None, "theirs") is True
