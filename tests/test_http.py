"""What every request to the SSO carries: our User-Agent, and a timeout."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from esi_views import __version__, jwks
from esi_views.exceptions import SSOMalformedResponseError


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self):
        self.seen.append(dict(self.headers))
        body = b'{"keys": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_user_agent_names_package_version_and_contact(recorder, settings):
    settings.ESI_SSO_JWKS_URL = recorder + "/jwks"
    settings.ESI_USER_CONTACT_EMAIL = "ops@alliance.example"
    jwks.clear_jwks_cache()
    assert jwks.get_signing_key("any") is None
    agent = _Recorder.seen[0]["User-Agent"]
    assert agent.startswith(f"django-esi-views/{__version__} ")
    assert "ops@alliance.example" in agent


def test_jwks_that_is_not_json_is_malformed(fake_sso):
    fake_sso.inject("malformed_json", endpoint="jwks")
    with pytest.raises(SSOMalformedResponseError):
        jwks.get_signing_key("any")
