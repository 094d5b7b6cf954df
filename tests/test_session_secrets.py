"""Session keys are never stored, shown or put in a form (issue 11, point 1)."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from esi_views.models import CallbackRedirect, hash_session_key
from tests.browserless import follow, to_sso_and_back
from tests.views_app import SCOPES

TOKEN_URL = "/v/mixin/token/1/"


def _row_text(record: CallbackRedirect) -> str:
    return " ".join(str(getattr(record, f.attname)) for f in CallbackRedirect._meta.fields)


@pytest.mark.django_db
def test_a_flow_stores_a_keyed_hash_of_the_session_key_not_the_key(client, fake_sso):
    fake_sso.add_character(90003001, "Hash Pilot")
    fake_sso.select_character(90003001)
    start = client.get("/v/mixin/single_use/1/")
    key = start.cookies["sessionid"].value
    record = CallbackRedirect.objects.get()
    assert key not in _row_text(record) and key not in str(record) and key not in repr(record)
    assert record.state not in str(record)
    assert record.session_hash == hash_session_key(key) and len(record.session_hash) == 64
    # The flow still completes, looked up by the hash.
    back = to_sso_and_back(client, start, fake_sso)
    assert follow(client, back).json()["character"] == 90003001


def test_the_hash_is_keyed_by_the_secret_key(settings):
    before = hash_session_key("abc")
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert hash_session_key("abc") != before


def _unpacked(flow: str) -> str:
    """What anyone reading the page gets out of the signed (not encrypted) field."""
    data = flow.split(":")[0]
    compressed = data.startswith(".")
    raw = base64.urlsafe_b64decode(data.lstrip(".") + "=" * (-len(data.lstrip(".")) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode()


@pytest.mark.django_db
def test_the_selection_page_carries_nothing_reversible_to_the_session(client, esi_token):
    user = get_user_model().objects.create_user("selector")
    client.force_login(user)
    esi_token(user, character_id=90003002, scopes=SCOPES)
    page = client.get(TOKEN_URL)
    assert page.status_code == 200
    key = client.session.session_key
    html = page.content.decode()
    flow = page.context["flow"]
    assert key not in html and key not in _unpacked(flow)
    payload = signing.loads(flow, salt="esi_views.flow.selection")
    assert key not in json.dumps(payload)
    assert hash_session_key(key) not in json.dumps(payload)  # not the stored hash either
    # Bound all the same: the form of this session works, in another session it does not.
    other = Client()
    other.force_login(user)
    refused = other.post("/esi/select/", {"flow": flow, "action": "add"})
    assert refused.status_code == 403
    assert client.post("/esi/select/", {"flow": flow, "action": "add"}).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("binding", ["", None, 1, ["x"], {"a": 1}, "0" * 64])
def test_a_forged_selection_binding_is_refused(client, binding):
    user = get_user_model().objects.create_user("forger")
    client.force_login(user)
    payload = {"k": "token", "s": "", "r": "/", "sb": binding}
    flow = signing.dumps(payload, salt="esi_views.flow.selection", compress=True)
    assert client.post("/esi/select/", {"flow": flow, "action": "add"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_migration_hashes_the_keys_already_stored():
    executor = MigrationExecutor(connection)
    ours = next(
        key
        for key in executor.loader.disk_migrations
        if key[0] == "esi_views" and key[1].endswith("_callbackredirect_session_hash")
    )
    before = [
        parent.key
        for parent in executor.loader.graph.node_map[ours].parents
        if parent.key[0] == "esi_views"
    ]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Old = old.get_model("esi_views", "CallbackRedirect")
    Old.objects.create(session_key="k" * 32, state="s" * 32, return_url="/")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("esi_views"))
    record = CallbackRedirect.objects.get(state="s" * 32)
    assert record.session_hash == hash_session_key("k" * 32)


@pytest.mark.django_db
def test_the_oauth_state_is_spent_at_the_callback_not_reused_as_the_hand_back_key(client, fake_sso):
    fake_sso.add_character(90003003, "State Pilot")
    fake_sso.select_character(90003003)
    start = client.get("/v/mixin/single_use/1/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    import requests

    approved = requests.get(start["Location"], allow_redirects=False, timeout=10)
    callback = approved.headers["Location"].split("testserver", 1)[1]
    back = client.get(callback)
    key = parse_qs(urlsplit(back["Location"]).query)["esi_flow"][0]
    assert key != state and state not in back["Location"]
    assert not CallbackRedirect.objects.filter(state=state).exists()
    assert follow(client, back).json()["character"] == 90003003
    replay = client.get(callback)
    assert replay.status_code == 400  # the state is spent
