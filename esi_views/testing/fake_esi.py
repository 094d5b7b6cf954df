"""A fake ESI over real HTTP, with CCP's rate limits, for tests, benchmarks and demos.

    with FakeEveSSO() as sso, FakeESI(sso, window=15) as esi:
        settings.ESI_API_URL = esi.base_url
        esi.inject("rate_limited_no_headers")  # the next call gets a bare 429

Route groups float like ESI's (tokens come back one window after they were spent; a
short ``window`` makes tests fast), every answer carries ``X-Ratelimit-*`` and
``X-ESI-Error-Limit-*`` headers, ETags give 304s, ``Expires`` and ``X-Pages`` are set
per route. Bearer tokens are verified against the fake SSO's keys (signature, expiry,
scope, the character in the path). ``python -m esi_views.testing.fake_esi`` runs one.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING, Any, cast

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from esi_views.testing._fake_esi_routes import (
    ESI_FAULTS,
    EsiProtocol,
    FakeGroup,
    FakeRoute,
    Fault,
)
from esi_views.testing._fake_protocol import Reply, Request
from esi_views.testing._fake_tokens import shared_keys
from esi_views.testing.fake_sso import _Server

if TYPE_CHECKING:
    from esi_views.testing.fake_sso import FakeEveSSO

__all__ = ["FakeESI", "FakeGroup", "FakeRoute", "main"]


def _skills(values: dict[str, str], page: int) -> Any:
    return {"skills": [{"skill_id": 3300, "trained_skill_level": 5}], "total_sp": 5000000}


def _assets(values: dict[str, str], page: int) -> Any:
    return [{"item_id": page * 1000 + i, "type_id": 34} for i in range(3)]


def default_routes() -> list[FakeRoute]:
    c = "/characters/{character_id}"
    return [
        FakeRoute(
            "GET",
            f"{c}/skills",
            "char-skill",
            "esi-skills.read_skills.v1",
            True,
            _skills,
            expires=0,
        ),
        FakeRoute(
            "GET", f"{c}/wallet", "char-wallet", "esi-wallet.read_character_wallet.v1", True, 1234.5
        ),
        FakeRoute(
            "GET", f"{c}/assets", "char-asset", "esi-assets.read_assets.v1", True, _assets, pages=3
        ),
        FakeRoute("GET", "/status", "status", data={"players": 23000}, expires=30),
        FakeRoute(
            "GET",
            "/markets/prices",
            "market",
            data=[{"type_id": 34, "average_price": 5}],
            expires=300,
        ),
        FakeRoute(
            "GET",
            "/characters/{character_id}",
            "char-detail",
            data=lambda v, p: {"name": f"Pilot {v['character_id']}"},
        ),
        FakeRoute("POST", "/universe/names", None),
    ]


class FakeESI:
    """An ESI look-alike on a background thread. See the module docstring."""

    def __init__(
        self,
        sso: FakeEveSSO | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        window: float = 15.0,
        limit: int = 150,
        latency: float = 0.0,
        error_limit: int = 100,
        error_window: float = 60.0,
        routes: list[FakeRoute] | None = None,
    ) -> None:
        self.sso = sso
        self.host, self.port = host, port
        self.latency = latency
        self.error_limit, self.error_window = error_limit, error_window
        self.log_requests = False
        self.routes = routes if routes is not None else default_routes()
        self.groups: dict[str, FakeGroup] = {}
        for route in self.routes:
            if route.group and route.group not in self.groups:
                self.groups[route.group] = FakeGroup(route.group, limit, float(window))
        self._defaults = {name: (g.limit, g.window) for name, g in self.groups.items()}
        self._protocol = EsiProtocol(self)
        self.calls = self._protocol.calls
        self.spent = self._protocol.spent
        self._keyset: tuple[dict, KeySet] | None = None
        self._server: _EsiServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeESI:
        if self._server is None:
            self._server = _EsiServer((self.host, self.port), self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name=f"FakeESI-{self._server.server_address[1]}",
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeESI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeESI is not running; call start() first")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def settings(self) -> dict[str, object]:
        return {"ESI_API_URL": self.base_url}

    # -- configuration -----------------------------------------------------------------

    def add_route(self, route: FakeRoute, *, limit: int = 150, window: float = 15.0) -> None:
        self.routes.insert(0, route)
        if route.group and route.group not in self.groups:
            self.groups[route.group] = FakeGroup(route.group, limit, float(window))
            self._defaults[route.group] = (limit, float(window))

    def set_limit(self, group: str, limit: int, window: float | None = None) -> None:
        self.groups[group].limit = limit
        if window is not None:
            self.groups[group].window = float(window)

    def inject(self, fault: str, *, times: int | None = 1, route: str | None = None) -> None:
        """The next ``times`` answers (of ``route``, a template, or any) misbehave."""
        if fault not in ESI_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(ESI_FAULTS)}")
        with self._protocol._lock:
            self._protocol.faults.append(Fault(fault, times, route))

    def clear_faults(self) -> None:
        with self._protocol._lock:
            self._protocol.faults.clear()

    def reset(self) -> None:
        """Empty buckets, error window, faults and counters; restore the starting limits."""
        self._protocol.reset()
        self.latency = 0.0
        for name, (limit, window) in self._defaults.items():
            if name in self.groups:
                self.groups[name].limit, self.groups[name].window = limit, window

    # -- used by the protocol -----------------------------------------------------------

    def find_route(self, method: str, path: str) -> tuple[FakeRoute, dict[str, str]] | None:
        for route in self.routes:
            if route.method == method:
                found = route.pattern.match(path)
                if found:
                    return route, found.groupdict()
        return None

    def _keys(self) -> KeySet:
        document = self.sso.jwks if self.sso is not None else shared_keys().public_jwks()
        cached = self._keyset
        if cached is None or cached[0] != document:  # the SSO may rotate its keys
            keys = KeySet.import_key_set(cast(KeySetSerialization, document))
            cached = self._keyset = (document, keys)
        return cached[1]

    def authorize(
        self, request: Request, route: FakeRoute, values: dict[str, str]
    ) -> tuple[str, tuple[int, str] | None]:
        """The bucket's user for this request, and (status, error) when it is refused."""
        ip = request.headers.get("X-Forwarded-For") or "127.0.0.1"
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            if route.authenticated:
                return ip, (401, "authentication required")
            return ip, None
        try:
            token = jwt.decode(header[7:], self._keys(), algorithms=["RS256", "ES256"])
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(token.claims)
        except (JoseError, ValueError) as exc:
            return ip, (401, f"invalid token: {exc.__class__.__name__}")
        claims = token.claims
        character = str(claims.get("sub", "")).rpartition(":")[2]
        user = f"{claims.get('azp', '')}:{character}"
        if not route.authenticated:
            return f"{ip}:{claims.get('azp', '')}", None
        scopes = claims.get("scp") or []
        scopes = [scopes] if isinstance(scopes, str) else scopes
        if route.scope and route.scope not in scopes:
            return user, (403, "token is not valid for scope(s): " + route.scope)
        if "character_id" in values and values["character_id"] != character:
            return user, (403, "token not valid for this character")
        return user, None


class _EsiServer(_Server):
    request_queue_size = 128  # benchmarks open dozens of connections at once

    def __init__(self, address: tuple[str, int], esi: FakeESI) -> None:
        self.esi = esi
        super().__init__(address, esi)  # type: ignore[arg-type]
        self.server_version = "FakeESI/1.0"

    def answer(self, request: Request) -> Reply:
        return self.esi._protocol.handle(request)

    @property
    def log_requests(self) -> bool:
        return self.esi.log_requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m esi_views.testing.fake_esi",
        description="Run a fake ESI with CCP's rate limits.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766, help="0 picks a free port")
    parser.add_argument("--window", type=float, default=15.0, help="seconds per window")
    parser.add_argument("--limit", type=int, default=150, help="tokens per window and group")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    esi = FakeESI(
        None, args.host, args.port, window=args.window, limit=args.limit, latency=args.latency
    )
    esi.log_requests = not args.quiet

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    with esi:
        try:  # a SIGTERM may come as soon as the first line is out
            print(
                f"Fake ESI running at {esi.base_url} (tokens of the fake SSO's shared keys)",
                flush=True,
            )
            print(f"Django settings:\n    ESI_API_URL = {esi.base_url!r}", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
