"""OpenAPI for ``EveSSOAuthentication`` through drf-spectacular (imported by ``apps.ready``).

Two security schemes, either of which an operation accepts: ``eveSSO``, OAuth2's
authorization-code flow against the configured EVE SSO (``ESI_SSO_AUTHORIZE_URL``,
``ESI_SSO_TOKEN_URL``: how a client gets a token), and ``eveBearer``, HTTP bearer with
a JWT (what the server reads; Swagger UI's "Authorize" takes a pasted access token
there). Each operation's ``eveSSO`` requirement lists the scopes its esi_drf
permissions require, read the way the permissions read them
(``with_scopes``, ``get_required_scopes()``, ``required_scopes``; per action for
ViewSets, as the generator sets ``view.action``). The scheme lists every scope any
operation requires: the generator asks once per operation and registers the first
definition only, so later operations merge their scopes into the registered one.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.drainage import warn
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AND, NOT, OR

from esi_views.conf import esi_settings
from esi_views.models import Scope

from .composition import AllOf, AnyOf, NoneOf
from .permissions import HasESIToken

__all__ = [
    "BEARER_SCHEME",
    "OAUTH2_SCHEME",
    "EveSSOScheme",
    "postprocess_error_responses",
    "required_scopes_of",
]


def _permission_scopes(permission: Any, view: Any) -> set[str]:
    if isinstance(permission, HasESIToken):
        return set(permission.get_required_scopes(getattr(view, "request", None), view))
    # Tuples, not "A | B": on permission classes | composes them.
    if isinstance(permission, (NoneOf, NOT)):
        return set()  # "must NOT hold a token" asks the client for no scope
    if isinstance(permission, (AllOf, AnyOf)):
        parts = permission.parts
    elif isinstance(permission, (AND, OR)):
        parts = [permission.op1, permission.op2]  # type: ignore[union-attr]  # not in the stubs
    else:
        return set()
    return set().union(*(_permission_scopes(part, view) for part in parts))


def required_scopes_of(view: Any) -> list[str]:
    """Every scope the view's esi_drf permissions require (sorted)."""
    try:
        found = set().union(*(_permission_scopes(p, view) for p in view.get_permissions()))
    except ImproperlyConfigured as exc:
        warn(f"esi_drf: could not read the required scopes of {type(view).__name__}: {exc}")
        return []
    return sorted(found)


def _described(scopes: set[str]) -> dict[str, str]:
    # Scope.friendly_name is a pure function of the name: no database access here.
    return {name: Scope(name=name).friendly_name for name in sorted(scopes)}


OAUTH2_SCHEME = "eveSSO"
BEARER_SCHEME = "eveBearer"


class EveSSOScheme(OpenApiAuthenticationExtension):
    target_class = "esi_drf.authentication.EveSSOAuthentication"
    match_subclasses = True
    # One authentication class, two ways to describe it: alternatives (OR) per operation.
    name = [OAUTH2_SCHEME, BEARER_SCHEME]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        # OpenAPI 3.0: only OAuth2 requirements may list scopes; the bearer one is empty.
        return [{OAUTH2_SCHEME: required_scopes_of(auto_schema.view)}, {BEARER_SCHEME: []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        scopes = set(required_scopes_of(auto_schema.view))
        component = ResolvedComponent(
            name=OAUTH2_SCHEME,
            type=ResolvedComponent.SECURITY_SCHEMA,
            object=self.target.__class__,
        )
        if component in auto_schema.registry:
            flow = auto_schema.registry[component].schema["flows"]["authorizationCode"]
            flow["scopes"] = _described(scopes | set(flow["scopes"]))
        oauth2 = {
            "type": "oauth2",
            "description": "An EVE SSO access token (JWT) sent as `Authorization: Bearer "
            "<token>`; its `scp` must hold the operation's scopes.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": esi_settings.SSO_AUTHORIZE_URL,
                    "tokenUrl": esi_settings.SSO_TOKEN_URL,
                    "scopes": _described(scopes),
                }
            },
        }
        bearer = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An EVE SSO access token (JWT) you already hold, sent as "
            "`Authorization: Bearer <token>`; its `scp` must hold the "
            f"scopes listed under `{OAUTH2_SCHEME}` for the operation.",
        }
        return [oauth2, bearer]


# -- the answers of a refusal (a drf-spectacular postprocessing hook) --------------------------

_AUTHENTICATION_FAILED = {
    "type": "object",
    "description": "401: the bearer token was refused (invalid, expired, unknown character). "
    "`WWW-Authenticate` says why.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_TOKEN_REQUIRED = {
    "type": "object",
    "description": "403: no token with the required scopes. Send the user to `login_url` "
    "(it starts the EVE SSO for exactly those scopes and comes back).",
    "properties": {
        "detail": {"type": "string"},
        "code": {
            "type": "string",
            "enum": ["esi_token_required", "esi_character_invalid"],
            "example": "esi_token_required",
        },
        "required_scopes": {"type": "array", "items": {"type": "string"}},
        "login_url": {
            "type": "string",
            "format": "uri-reference",
            "example": "/esi/login/?next=%2F&scopes=esi-skills.read_skills.v1",
        },
    },
    "required": ["detail", "code", "required_scopes", "login_url"],
}


def _json_response(description: str, name: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def postprocess_error_responses(
    result: dict[str, Any], generator: Any = None, request: Any = None, public: bool = True
) -> dict[str, Any]:
    """Add the 401 and the 403 (``esi_token_required``) bodies to protected operations.

    List it in ``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]`` (after drf-spectacular's
    default ``postprocess_schema_enums``). Operations secured by ``eveSSO`` (and
    ``eveBearer``) get the 401;
    those whose esi_drf permissions require scopes also get the 403 with ``login_url``.
    """
    used: set[str] = set()
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            requirements = [
                r[OAUTH2_SCHEME] for r in operation.get("security", []) if OAUTH2_SCHEME in r
            ]
            if not requirements:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "401", _json_response("The bearer token was refused.", "EsiAuthenticationFailed")
            )
            used.add("EsiAuthenticationFailed")
            if any(requirements):
                responses.setdefault(
                    "403",
                    _json_response(
                        "No token with the required scopes; `login_url` gets one.",
                        "EsiTokenRequired",
                    ),
                )
                used.add("EsiTokenRequired")
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in (
        ("EsiAuthenticationFailed", _AUTHENTICATION_FAILED),
        ("EsiTokenRequired", _TOKEN_REQUIRED),
    ):
        if name in used:
            schemas.setdefault(name, schema)
    return result
