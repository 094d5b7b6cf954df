"""A fake EVE Online SSO v2 server, over real HTTP, for tests and the demo site.

It mirrors EVE's URL layout, so setting ``ESI_SSO_BASE_URL`` to ``FakeEveSSO.base_url``
(see :meth:`FakeEveSSO.settings`) moves our client onto it. It needs no Django settings.

    with FakeEveSSO() as sso:
        sso.add_character(90000001, "Amarr Pilot")
        sso.select_character(90000001)       # authorize auto-approves as this character
        sso.inject("rate_limited", times=2)  # the next two token requests get a 429

The OAuth endpoints live in ``_fake_protocol``, keys and JWTs in ``_fake_tokens``, HTML
in ``_fake_pages``. Run ``python -m esi_views.testing.fake_sso --help`` for a
standalone server.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import secrets
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from esi_views.testing._fake_protocol import (
    CODE_LIFETIME,
    Fault,
    Reply,
    Request,
    SSOProtocol,
    json_reply,
    validate_fault,
)
from esi_views.testing._fake_tokens import (
    ALGORITHMS,
    SigningKeys,
    access_token_claims,
    foreign_keys,
    normalise_scopes,
    shared_keys,
    sign,
)

__all__ = ["FakeCharacter", "FakeEveSSO", "main"]

REFRESH_TOKEN_MODES = ("same", "rotate", "omit")


@dataclass
class FakeCharacter:
    """A character the fake SSO can log in as; edit ``owner_hash`` to simulate a sale."""

    character_id: int
    name: str
    owner_hash: str


class FakeEveSSO:
    """An EVE SSO v2 look-alike on a background thread. See the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        callback_url: str = "http://testserver/esi/callback/",
        access_token_lifetime: int = 1199,
        latency: float = 0.0,
        refresh_token_mode: str = "same",
        issuer: str | None = None,
    ) -> None:
        if refresh_token_mode not in REFRESH_TOKEN_MODES:
            raise ValueError(f"refresh_token_mode must be one of {REFRESH_TOKEN_MODES}")
        self.host, self.port = host, port
        self.client_id, self.client_secret = client_id, client_secret
        self.callback_url = callback_url
        self.access_token_lifetime = access_token_lifetime
        # The JWTs' "iss"; default base_url. Benchmarks set EVE's own, so that clients
        # which accept only EVE's issuer (django-esi) can be measured against this server.
        self.issuer = issuer
        # Settable at any time; reset() restores the constructor's values.
        self._default_latency, self._default_mode = latency, refresh_token_mode
        self.latency = latency
        self.refresh_token_mode = refresh_token_mode
        self.code_lifetime: float = CODE_LIFETIME
        self.log_requests = False
        self._lock = threading.RLock()
        self._keys = shared_keys()
        self._salt = secrets.token_hex(8)  # default owner hashes differ between servers
        self._characters: dict[int, FakeCharacter] = {}
        self._selected: int | None = None
        self._protocol = SSOProtocol(self)
        self.calls: collections.Counter[str] = self._protocol.calls
        # The most requests handled at once per endpoint since reset() ("token": the cap
        # ESI_SSO_MAX_CONCURRENCY must keep).
        self.max_concurrent: collections.Counter[str] = self._protocol.max_in_flight
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeEveSSO:
        with self._lock:
            if self._server is None:
                self._server = _Server((self.host, self.port), self)
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.05},  # so stop() returns quickly
                    name=f"FakeEveSSO-{self._server.server_address[1]}",
                    daemon=True,
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeEveSSO:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        server = self._server
        if server is None:
            raise RuntimeError("FakeEveSSO is not running; call start() first")
        return f"http://{self.host}:{server.server_address[1]}"

    def settings(self) -> dict[str, object]:
        """Django settings that point our SSO client at this server."""
        return {
            "ESI_SSO_BASE_URL": self.base_url,
            "ESI_SSO_CLIENT_ID": self.client_id,
            "ESI_SSO_CLIENT_SECRET": self.client_secret,
            "ESI_SSO_CALLBACK_URL": self.callback_url,
            "ESI_CHARACTER_PORTRAIT_URL": self.base_url + "/characters/{character_id}/portrait",
            **({"ESI_SSO_ISSUERS": [self.issuer]} if self.issuer else {}),
        }

    # -- characters --------------------------------------------------------------------

    def add_character(
        self, character_id: int, name: str, owner_hash: str | None = None
    ) -> FakeCharacter:
        owner_hash = owner_hash or self._default_owner_hash(character_id)
        character = FakeCharacter(character_id, name, owner_hash)
        with self._lock:
            self._characters[character_id] = character
        return character

    @property
    def characters(self) -> list[FakeCharacter]:
        with self._lock:
            return list(self._characters.values())

    def select_character(self, character_id: int | None) -> None:
        """Auto-approve authorize requests as this character; None shows the picker."""
        with self._lock:
            if character_id is not None and character_id not in self._characters:
                raise KeyError(f"unknown character {character_id}; add_character() it first")
            self._selected = character_id

    @property
    def selected_character(self) -> int | None:
        return self._selected

    def change_owner(self, character_id: int, new_hash: str | None = None) -> str:
        """The character changed hands: later tokens carry a new owner hash."""
        new_hash = new_hash or base64.b64encode(secrets.token_bytes(20)).decode()
        with self._lock:
            self._characters[character_id].owner_hash = new_hash
        return new_hash

    def revoke_all(self, character_id: int) -> None:
        """Kill the character's refresh tokens: a later refresh gets invalid_grant."""
        self._protocol.revoke_all(character_id)

    def reset(self) -> None:
        """Forget characters, codes, tokens, faults and counters; keep keys and server."""
        with self._lock:
            self._characters.clear()
            self._selected = None
            self.latency = self._default_latency
            self.refresh_token_mode = self._default_mode
            self.code_lifetime = CODE_LIFETIME
        self._protocol.reset()

    def _default_owner_hash(self, character_id: int) -> str:
        # Looks like EVE's (base64 of 20 bytes), stable for one server's lifetime.
        digest = hashlib.sha1(f"{self._salt}:{character_id}".encode(), usedforsecurity=False)
        return base64.b64encode(digest.digest()).decode()

    # -- keys and tokens ---------------------------------------------------------------

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWKS document served at /oauth/jwks."""
        with self._lock:
            return self._keys.public_jwks()

    def rotate_keys(self) -> None:
        """New signing keys with new kids, for this server only; old kids disappear."""
        keys = SigningKeys.generate()
        with self._lock:
            self._keys = keys

    def mint_access_token(
        self,
        character_id: int,
        scopes: str | Iterable[str] = (),
        *,
        audience: str | list[str] | None = None,
        expires_in: int | None = None,
        issuer: str | None = None,
        alg: str = "RS256",
        owner_hash: str | None = None,
        sub: str | None = None,
        kid: str | None = None,
        sign_with_foreign_key: bool = False,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A JWT exactly like the token endpoint's; each override breaks one rule.

        ``claims`` replaces claims last, with any JSON value (``{"exp": float("inf")}``,
        ``{"iat": "soon"}``); a claim whose value is ``None`` is left out.
        """
        if alg not in ALGORITHMS:
            raise ValueError(f"alg must be one of {ALGORITHMS}")
        with self._lock:
            character = self._characters.get(character_id)
            key = self._keys.key_for(alg)
        if character is None:  # tokens for unregistered characters are handy in unit tests
            character = FakeCharacter(
                character_id, f"Character {character_id}", self._default_owner_hash(character_id)
            )
        # Our keys are generated with a kid, so key.kid is never None.
        kid = kid or key.kid or ""
        payload = access_token_claims(
            character_id=character_id,
            name=character.name,
            owner_hash=owner_hash or character.owner_hash,
            scopes=normalise_scopes(scopes),
            client_id=self.client_id,
            audience=audience,
            issuer=issuer if issuer is not None else (self.issuer or self.base_url),
            expires_in=self.access_token_lifetime if expires_in is None else expires_in,
            kid=kid,
            sub=sub,
        )
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        signing_key = foreign_keys().key_for(alg) if sign_with_foreign_key else key
        return sign(payload, signing_key, alg=alg, kid=kid)

    # -- fault injection ---------------------------------------------------------------

    def inject(
        self, fault: str, *, endpoint: str = "token", times: int | None = 1, **params: Any
    ) -> None:
        """Make the next ``times`` requests to ``endpoint`` misbehave (None: until cleared)."""
        validate_fault(fault, endpoint, times)
        self._protocol.add_fault(Fault(fault, times, params), endpoint)

    def clear_faults(self) -> None:
        self._protocol.clear_faults()


# -- HTTP plumbing -------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sso: FakeEveSSO) -> None:
        self.sso = sso
        super().__init__(address, _Handler)

    # The two things the handler asks of the app it serves (the fake ESI serves another).
    def answer(self, request: Request) -> Reply:
        return self.sso._protocol.handle(request)

    @property
    def log_requests(self) -> bool:
        return self.sso.log_requests


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP into a Request and writes the Reply; the protocol does the rest."""

    server: _Server
    server_version = "FakeEveSSO/1.0"
    # Keep-alive, like the real SSO: clients reuse connections, and benchmarks do not
    # measure a TCP handshake and a new server thread per request.
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle kept-alive connection frees its thread after this
    # Headers and body go out in separate writes; without TCP_NODELAY a kept-alive
    # connection waits for the client's delayed ACK (40 ms) between them.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = raw.decode("utf-8", "replace")
        is_form = self.headers.get_content_type() == "application/x-www-form-urlencoded"
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            form=dict(parse_qsl(body, keep_blank_values=True)) if is_form else {},
            headers=self.headers,
            body=raw,
        )
        try:
            reply = self.server.answer(request)
        except Exception as exc:  # a bug here should reach the test as a readable 500
            reply = json_reply(500, {"error": "fake_sso_bug", "error_description": repr(exc)})
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (e.g. the "timeout" fault)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)


# -- command line --------------------------------------------------------------------------

DEMO_CHARACTERS = (
    (90000001, "Amarr Pilot"),
    (90000002, "Caldari Pilot"),
    (90000003, "Gallente Pilot"),
)


def _character_arg(value: str) -> tuple[int, str]:
    character_id, _, name = value.partition(":")
    if not character_id.isdigit() or not name:
        raise argparse.ArgumentTypeError("expected ID:NAME, e.g. '90000001:Amarr Pilot'")
    return int(character_id), name


def callback_url_for(site: str) -> str:
    """``http://127.0.0.1:8000`` -> ``http://127.0.0.1:8000/esi/callback/`` (URLs under esi/)."""
    return site.rstrip("/") + "/esi/callback/"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m esi_views.testing.fake_sso", description="Run a fake EVE Online SSO."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--site",
        default="http://127.0.0.1:8000",
        help="your site's address; the callback URL is derived from it (<site>/esi/callback/)",
    )
    parser.add_argument(
        "--callback-url",
        default=None,
        help="the exact ESI_SSO_CALLBACK_URL, if your site does not include esi_views.urls "
        "under esi/ (overrides --site)",
    )
    parser.add_argument("--client-id", default="fake-client-id")
    parser.add_argument("--client-secret", default="fake-client-secret")
    parser.add_argument(
        "--character",
        action="append",
        type=_character_arg,
        default=[],
        metavar="ID:NAME",
        help="repeatable; three demo characters if omitted",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    callback_url = args.callback_url or callback_url_for(args.site)
    sso = FakeEveSSO(
        args.host,
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        callback_url=callback_url,
        latency=args.latency,
    )
    sso.log_requests = not args.quiet
    for character_id, name in args.character or DEMO_CHARACTERS:
        sso.add_character(character_id, name)

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    with sso:
        print(f"Fake EVE SSO running at {sso.base_url}", flush=True)
        print("Django settings for your site:", flush=True)
        for name, value in sso.settings().items():
            print(f"    {name} = {value!r}", flush=True)
        print(
            f"It sends browsers back to {callback_url} (your site must serve "
            "esi_views:callback there).",
            flush=True,
        )
        print("Press Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
