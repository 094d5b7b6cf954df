"""The OpenAPI schema of the test API: valid, and equal to tests/drf/schema_snapshot.yaml.

After an intended change, regenerate the snapshot and review its diff:

    ESI_UPDATE_SCHEMA_SNAPSHOT=1 .venv/bin/pytest tests/drf/test_schema.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from django.test import override_settings
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.validation import validate_schema

from tests.drf.api import SKILLS, WALLET

SNAPSHOT = Path(__file__).with_name("schema_snapshot.yaml")
EVE = "https://login.eveonline.com"


@pytest.fixture
def schema():
    # Only our test API (other apps' endpoints must not move the snapshot), and the real
    # EVE URLs whatever the SSO settings of the run.
    with override_settings(ESI_SSO_BASE_URL=EVE):
        generator = SchemaGenerator(patterns=[path("api/", include("tests.drf.api"))])
        return generator.get_schema(request=None, public=True)


def test_schema_is_valid_openapi(schema):
    validate_schema(schema)


def test_schema_matches_snapshot(schema):
    rendered = OpenApiYamlRenderer().render(schema, renderer_context={}).decode()
    if os.environ.get("ESI_UPDATE_SCHEMA_SNAPSHOT") == "1":
        SNAPSHOT.write_text(rendered)
    assert rendered == SNAPSHOT.read_text(), (
        "The schema changed; if intended, regenerate with ESI_UPDATE_SCHEMA_SNAPSHOT=1 "
        "(see this module's docstring) and review the diff."
    )


def test_security_scheme_is_eve_oauth2(schema):
    scheme = schema["components"]["securitySchemes"]["eveSSO"]
    flow = scheme["flows"]["authorizationCode"]
    assert scheme["type"] == "oauth2"
    assert flow["authorizationUrl"] == f"{EVE}/v2/oauth/authorize"
    assert flow["tokenUrl"] == f"{EVE}/v2/oauth/token"
    assert sorted(flow["scopes"]) == [SKILLS, WALLET]  # every scope some operation needs


def test_bearer_scheme_takes_a_pasted_access_token(schema):
    # What Swagger UI's "Authorize" offers without any OAuth2 client set-up.
    assert schema["components"]["securitySchemes"]["eveBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schema["components"]["securitySchemes"]["eveBearer"]["description"],
    }


def _requirement(schema, url: str) -> list[str]:
    security = schema["paths"][url]["get"]["security"]
    return next(entry["eveSSO"] for entry in security if "eveSSO" in entry)


@pytest.mark.parametrize(
    ("url", "scopes"),
    [
        ("/api/skills/", [SKILLS]),  # view.required_scopes
        ("/api/wallet/", [WALLET]),  # with_scopes
        ("/api/fn/skills/", [SKILLS]),  # @api_view
        ("/api/characters/", [SKILLS]),  # ViewSet, per action
        ("/api/characters/{id}/", [SKILLS, WALLET]),
        ("/api/composed/and/", [SKILLS]),  # composed
        ("/api/composed/or/", [WALLET]),
        ("/api/composed/not/", []),  # "must not hold" asks for nothing
        ("/api/plain/", []),
    ],
)
def test_each_operation_lists_its_scopes(schema, url, scopes):
    assert _requirement(schema, url) == scopes
    # Either scheme will do (OR); the bearer one carries no scopes in OpenAPI 3.0.
    assert {"eveBearer": []} in schema["paths"][url]["get"]["security"]


def test_served_schema_uses_the_extension(client, settings):
    settings.ESI_SSO_BASE_URL = EVE
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response.status_code == 200
    served = yaml.safe_load(response.content)
    validate_schema(served)
    assert served["components"]["securitySchemes"]["eveSSO"]["type"] == "oauth2"
    assert "/api/schema/" not in served["paths"]


def test_protected_operations_document_the_401_and_the_403_with_login_url(schema):
    operations = [op for item in schema["paths"].values() for op in item.values()]
    protected = [op for op in operations if any("eveSSO" in r for r in op.get("security", []))]
    assert protected
    for operation in protected:
        scopes = next(r["eveSSO"] for r in operation["security"] if "eveSSO" in r)
        responses = operation["responses"]
        assert responses["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/EsiAuthenticationFailed"
        }
        if scopes:
            assert responses["403"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/EsiTokenRequired"
            }
        else:  # "must not hold a token" asks for no scope: no esi_token_required 403
            assert "403" not in responses
    body = schema["components"]["schemas"]["EsiTokenRequired"]
    # The very keys of the 403 the permissions answer (tests/drf/test_permissions_session).
    assert (
        set(body["required"])
        == set(body["properties"])
        == {"detail", "code", "required_scopes", "login_url"}
    )
    assert "esi_token_required" in body["properties"]["code"]["enum"]
