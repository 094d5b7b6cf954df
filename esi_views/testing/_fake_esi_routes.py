"""The ESI side of :class:`~esi_views.testing.FakeESI`: routes, buckets, the error limit.

Transport-free like ``_fake_protocol``: :meth:`EsiProtocol.handle` turns a parsed
request into a reply. Buckets float as CCP describes: a response's cost (2xx 2, 3xx 1,
4xx 5, 5xx 0) comes back to its bucket one window after it was spent.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from esi_views.testing._fake_protocol import Reply, Request

if TYPE_CHECKING:
    from esi_views.testing.fake_esi import FakeESI

ESI_FAULTS = frozenset(
    {
        "server_error",
        "not_found",
        "rate_limited_no_headers",
        "malformed_limit",
        "negative_retry_after",
        "huge_retry_after",
        "non_json",
        "missing_headers",
        "error_limited",
    }
)


def status_cost(status: int) -> int:
    return 2 if status < 300 else 1 if status < 400 else 5 if status < 500 else 0


@dataclass
class FakeGroup:
    name: str
    limit: int
    window: float  # seconds (whole seconds appear in X-Ratelimit-Limit)


@dataclass
class FakeRoute:
    method: str
    template: str
    group: str | None  # None: not rate limited (no X-Ratelimit-* headers)
    scope: str | None = None
    authenticated: bool = False
    data: Callable[[dict[str, str], int], Any] | Any = None
    pages: int = 1
    expires: int = 0  # seconds of freshness announced with Expires; 0: no Expires
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}/?$")

    def body(self, values: dict[str, str], page: int, request: Request) -> Any:
        if callable(self.data):
            return self.data(values, page)
        if self.data is None and self.method == "POST":
            try:
                ids = json.loads(request.body or b"[]")
            except ValueError:
                return None
            return [
                {"id": i, "name": f"Name {i}", "category": "character"}
                for i in ids
                if isinstance(i, int)
            ]
        return self.data


@dataclass
class Fault:
    name: str
    remaining: int | None
    route: str | None


class EsiProtocol:
    """State of one fake ESI: buckets, error window, faults, counters."""

    def __init__(self, esi: FakeESI) -> None:
        self.esi = esi
        self._lock = threading.Lock()
        self.buckets: dict[tuple[str, str], collections.deque] = collections.defaultdict(
            collections.deque
        )
        self.spent: collections.Counter[str] = collections.Counter()  # group -> tokens
        self.calls: collections.Counter[str] = collections.Counter()  # "status:N", template
        self.faults: list[Fault] = []
        self._errors: collections.deque = collections.deque()
        self.last_headers: dict[str, str] = {}  # of the latest request, for tests

    def reset(self) -> None:
        with self._lock:
            self.buckets.clear()
            self.spent.clear()
            self.calls.clear()
            self.faults.clear()
            self._errors.clear()

    def _take_fault(self, template: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.route in (None, template):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self.faults.remove(fault)
                    return fault.name
        return None

    # -- the floating window ----------------------------------------------------------

    def _used(self, key: tuple[str, str], window: float, now: float) -> int:
        entries = self.buckets[key]
        while entries and entries[0][0] <= now - window:
            entries.popleft()
        return sum(cost for _, cost in entries)

    def _error_remain(self, now: float) -> tuple[int, int]:
        window = self.esi.error_window
        while self._errors and self._errors[0] <= now - window:
            self._errors.popleft()
        remain = self.esi.error_limit - len(self._errors)
        reset = math.ceil(self._errors[0] + window - now) if self._errors else int(window)
        return remain, max(reset, 1)

    # -- requests ---------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        self.last_headers = dict(request.headers.items())
        if self.esi.latency:
            time.sleep(self.esi.latency)
        found = self.esi.find_route(request.method, request.path)
        if found is None:
            return self._finish(request, None, {}, 404, {"error": "Not found"}, "")
        route, values = found
        user, problem = self.esi.authorize(request, route, values)
        if problem is not None:
            return self._finish(request, route, {}, problem[0], {"error": problem[1]}, user)
        return self._finish(request, route, values, 200, None, user)

    def _finish(
        self,
        request: Request,
        route: FakeRoute | None,
        values: dict[str, str],
        status: int,
        payload: Any,
        user: str,
    ) -> Reply:
        template = route.template if route else request.path
        fault = self._take_fault(template)
        now = time.monotonic()
        headers: dict[str, str] = {}
        body: bytes | None = None
        with self._lock:
            remain, reset = self._error_remain(now)
            if remain <= 0 or fault == "error_limited":
                self.calls["status:420"] += 1
                return Reply(
                    420,
                    b'{"error":"This software has exceeded the error limit."}',
                    "application/json",
                    {"X-ESI-Error-Limit-Remain": "0", "X-ESI-Error-Limit-Reset": str(reset)},
                )
            group = self.esi.groups.get(route.group) if route and route.group else None
            key = (group.name, user) if group else None
            if fault == "server_error":
                status, payload = 500, {"error": "Internal server error"}
            elif fault == "not_found":
                status, payload = 404, {"error": "Not found"}
            if group is not None and key is not None:
                used = self._used(key, group.window, now)
                if fault == "rate_limited_no_headers":
                    self.calls["status:429"] += 1
                    self.calls["429_no_headers"] += 1
                    return Reply(429, b'{"error":"Too many requests"}', "application/json")
                if used + 1 > group.limit:  # no room even for the cheapest answer
                    entries = self.buckets[key]
                    wait = math.ceil(entries[0][0] + group.window - now) if entries else 1
                    status, payload = 429, {"error": "Too many requests"}
                    headers["Retry-After"] = {
                        "negative_retry_after": "-5",
                        "huge_retry_after": "99999999",
                    }.get(fault or "", str(max(wait, 1)))
            if status == 200 and route is not None:
                page = (
                    int(request.query.get("page", "1") or 1)
                    if request.query.get("page", "1").isdigit()
                    else 1
                )
                data = route.body(values, page, request)
                body = json.dumps(data).encode() if fault != "non_json" else b"<html>oops"
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                headers["ETag"] = etag
                if route.pages > 1:
                    headers["X-Pages"] = str(route.pages)
                if route.expires:
                    headers["Expires"] = formatdate(time.time() + route.expires, usegmt=True)
                if request.headers.get("If-None-Match") == etag:
                    status, body = 304, b""
            cost = status_cost(status)
            if group is not None and key is not None:
                if cost:
                    self.buckets[key].append((now, cost))
                    self.spent[group.name] += cost
                used = self._used(key, group.window, now)
                if fault != "missing_headers":
                    headers["X-Ratelimit-Group"] = group.name
                    headers["X-Ratelimit-Limit"] = (
                        "lots/ever"
                        if fault == "malformed_limit"
                        else f"{group.limit}/{int(group.window)}s"
                    )
                    headers["X-Ratelimit-Remaining"] = str(max(0, group.limit - used))
                    headers["X-Ratelimit-Used"] = str(cost)
            if 400 <= status < 600 and status != 420:
                self._errors.append(now)
            remain, reset = self._error_remain(now)
            headers["X-ESI-Error-Limit-Remain"] = str(remain)
            headers["X-ESI-Error-Limit-Reset"] = str(reset)
            self.calls[f"status:{status}"] += 1
            self.calls[template] += 1
        if body is None:
            body = json.dumps(payload).encode()
        return Reply(status, body, "application/json" if body else None, headers)
