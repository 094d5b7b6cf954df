"""The two answers esi_drf adds to DRF's: "get a token first" (403) and "SSO down" (503).

The 403 is JSON a client can act on without parsing prose: the scopes it lacks and a
URL that starts the EVE SSO for exactly those scopes (``esi_views.links.login_url``),
returning to the page that made the API call. Never a redirect: an API client that
followed one would land on the SSO's HTML login page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.request import Request

from esi_views import links
from esi_views.exceptions import EsiError
from esi_views.scopes import ScopesArg, normalize_scopes

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

__all__ = [
    "CHARACTER_INVALID",
    "TOKEN_REQUIRED",
    "ESITokenRequired",
    "SSOUnavailable",
    "token_required_detail",
]

TOKEN_REQUIRED = "esi_token_required"
CHARACTER_INVALID = "esi_character_invalid"

DEFAULT_DETAIL = _("An EVE SSO token with the required scopes is needed.")


def token_required_detail(
    request: Request,
    scopes: ScopesArg,
    *,
    detail: StrOrPromise | None = None,
    code: str = TOKEN_REQUIRED,
) -> dict[str, Any]:
    """The body of the 403: ``detail``, ``code``, ``required_scopes`` and ``login_url``.

    ``login_url`` comes back to the Referer only when it is on this site
    (``links.safe_return_url``), so the answer cannot be used as an open redirect.
    """
    names = sorted(normalize_scopes(scopes))
    next_url = links.safe_return_url(request, request.META.get("HTTP_REFERER"))
    return {
        "detail": detail or DEFAULT_DETAIL,
        "code": code,
        "required_scopes": names,
        "login_url": links.login_url(names, next_url),
    }


class ESITokenRequired(PermissionDenied, EsiError):
    """403 with the body of :func:`token_required_detail`.

    The permission classes answer with this shape; views raise it themselves when they
    find out late that a token will not do (e.g. ESI itself refused it).
    """

    default_code = TOKEN_REQUIRED

    def __init__(
        self,
        request: Request,
        scopes: ScopesArg,
        *,
        detail: StrOrPromise | None = None,
        code: str = TOKEN_REQUIRED,
    ) -> None:
        super().__init__(token_required_detail(request, scopes, detail=detail, code=code), code)


class SSOUnavailable(APIException, EsiError):
    """503: a bearer token could not be checked because the EVE SSO's keys are out of reach.

    Not a 401: the token may well be good, and telling the client it is invalid would
    make it throw the token away. ``Retry-After`` says when to try again (DRF sends
    ``wait`` as that header).
    """

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _(
        "The EVE SSO could not be reached to verify the access token. Try again shortly."
    )
    default_code = "sso_unavailable"
    default_wait = 30

    def __init__(self, detail: StrOrPromise | None = None, *, wait: float | None = None) -> None:
        super().__init__(detail)
        self.wait = max(1, round(wait)) if wait else self.default_wait
