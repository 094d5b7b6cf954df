"""``EsiSession``: calls to ESI within CCP's limits, for one token or for public routes.

One call: check the route's scope (no request on a missing one), answer from the cache
while fresh, check the shared error limit, reserve the cost in the route group's shared
bucket (one Redis round trip), send, settle the real cost, learn the group, cache.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from django.views.decorators.debug import sensitive_variables

from ..conf import esi_settings
from ..deferral import is_deferring
from ..exceptions import RedisUnavailableError
from ..redis_scripts import is_redis_error
from . import cache, groups, headers, limiter, signals, transport
from .errors import (
    EsiErrorLimitedError,
    EsiLimiterUnavailableError,
    EsiRateLimitedError,
    EsiResponseError,
    EsiRouteError,
    EsiScopeError,
    EsiUnreachableError,
)
from .routes import Route, fill_template, match_route

if TYPE_CHECKING:
    from ..models import Token

logger = logging.getLogger("esi_views.esi")

# A route whose group is unknown: one call at a time per caller until ESI names it.
PROBE_WINDOW = 10.0
# How often one call retries after a short 429 before giving up.
MAX_ATTEMPTS = 3


@dataclass
class Answer:
    """One ESI answer. ``status`` is the answer's (200 for a body revalidated by a 304)."""

    data: Any
    status: int
    headers: dict[str, str]
    from_cache: bool = False
    pages: int = 1
    text: str = field(default="", repr=False)


def _redis_error(exc: BaseException) -> bool:
    return isinstance(exc, RedisUnavailableError) or is_redis_error(exc)


class _LastStatus:
    """Which URLs failed last time: under the error threshold they are not tried again."""

    def __init__(self, size: int = 2048) -> None:
        self._items: OrderedDict[str, int] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # sessions are shared by threads

    def failed(self, url: str) -> bool:
        return self._items.get(url, 200) >= 400

    def note(self, url: str, status: int) -> None:
        with self._lock:
            self._items[url] = status
            self._items.move_to_end(url)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_last_status = _LastStatus()


class EsiSession:
    """Calls ESI as ``token`` (or anonymously when None). Get one from ``token.esi()``."""

    def __init__(self, token: Token | None = None) -> None:
        self.token = token
        self.character_id = token.character_id if token is not None else None
        self._scopes: frozenset[str] | None = None

    # -- public API ------------------------------------------------------------------

    def get(self, path: str, *, params: dict[str, Any] | None = None, **values: Any) -> Answer:
        """GET ``path`` (``{name}`` placeholders filled from keyword arguments)."""
        return self.request("GET", path, params=params, **values)

    def post(
        self, path: str, json: Any = None, *, params: dict[str, Any] | None = None, **values: Any
    ) -> Answer:
        """POST a JSON body, e.g. ``public().post("/universe/names/", json=[...])``."""
        return self.request("POST", path, params=params, json=json, **values)

    def get_all(self, path: str, *, params: dict[str, Any] | None = None, **values: Any) -> Answer:
        """Every ``X-Pages`` page of a paged route, each within the limits, joined."""
        first = self.get(path, params=params, **values)
        if first.pages <= 1 or not isinstance(first.data, list):
            return first
        data, from_cache = list(first.data), first.from_cache
        for page in range(2, first.pages + 1):
            answer = self.get(path, params={**(params or {}), "page": page}, **values)
            if isinstance(answer.data, list):
                data.extend(answer.data)
            from_cache = from_cache and answer.from_cache
        return Answer(data, first.status, first.headers, from_cache, first.pages)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        **values: Any,
    ) -> Answer:
        method = method.upper()
        try:
            concrete = fill_template(path, values) if values else path
        except ValueError as exc:
            raise EsiRouteError(str(exc)) from exc
        if "{" in concrete or "?" in concrete or "#" in concrete or ".." in concrete:
            raise EsiRouteError(f"Invalid ESI path {concrete!r}: pass values and params.")
        route = match_route(method, concrete)
        self._check_route(route)
        url = transport.url_for(route_path(concrete))
        for attempt in range(1, MAX_ATTEMPTS + 1):
            answer = self._attempt(route, url, params, json, last=attempt == MAX_ATTEMPTS)
            if answer is not None:
                return answer
        raise AssertionError("unreachable")  # pragma: no cover

    # -- steps -----------------------------------------------------------------------

    def _check_route(self, route: Route) -> None:
        if self.token is None or not route.scope:
            if self.token is None and route.scope:
                raise EsiScopeError(
                    f"{route.template} needs a token with {route.scope}; "
                    "call it through token.esi().",
                    scope=route.scope,
                    route=route.template,
                )
            return
        if self._scopes is None:  # read once per session
            self._scopes = frozenset(self.token.scopes.values_list("name", flat=True))
        if route.scope not in self._scopes:
            raise EsiScopeError(
                f"{route.method} {route.template} needs the scope {route.scope}, which the "
                f"token of character {self.character_id} does not have.",
                scope=route.scope,
                route=route.template,
            )
        character = route.params.get("character_id")
        if character is not None and character != str(self.character_id):
            raise EsiRouteError(
                f"{route.template} is called for character {character} with the token of "
                f"character {self.character_id}: ESI would refuse it (and count an error)."
            )

    def _bucket_user(self, route: Route) -> str:
        client = esi_settings.SSO_CLIENT_ID
        if self.token is None:
            return "public"
        if route.known and route.scope is None:
            return f"public:{client}"
        return f"{client}:{self.character_id}"

    def _pause(
        self,
        route: Route,
        group: str | None,
        wait: float,
        reason: str,
        budget: list[float],
        error: Exception,
    ) -> None:
        """Sleep through a short wait, or raise ``error`` (at once when deferring)."""
        action = "defer" if is_deferring() else ("wait" if wait <= budget[0] else "raise")
        signals.esi_delay.send(
            EsiSession,
            route=route.template,
            group=group,
            character_id=self.character_id,
            reason=reason,
            wait=wait,
            action=action,
        )
        if action != "wait":
            raise error
        budget[0] -= wait
        time.sleep(wait)

    def _signal_limited(
        self, route: Route, group: str | None, status: int, retry_after: float
    ) -> None:
        """ESI refused the call (429 rate limit or 420 error limit): tell the listeners."""
        signals.esi_limited.send(
            EsiSession,
            route=route.template,
            group=group,
            character_id=self.character_id,
            status=status,
            retry_after=retry_after,
        )

    def _limiter_down(self, route: Route, group: str | None, exc: Exception) -> Exception:
        if is_deferring():
            # Fail closed: the task comes back later, nothing goes out unchecked.
            wait = min(float(esi_settings.BACKOFF_MAX), 5.0)
            signals.esi_delay.send(
                EsiSession,
                route=route.template,
                group=group,
                character_id=self.character_id,
                reason="limiter_unavailable",
                wait=wait,
                action="defer",
            )
            return EsiRateLimitedError(
                f"The ESI limiter's Redis is unavailable: {exc}", retry_after=wait, group=group
            )
        return EsiLimiterUnavailableError(
            f"Cannot check ESI's limits, Redis is unavailable ({exc}); the call was not made."
        )

    def _check_errors(self, route: Route, url: str, budget: list[float]) -> None:
        while True:
            state = limiter.error_state()
            wait = state.blocked_for
            if (
                not wait
                and state.remain is not None
                and state.reset_in > 0
                and (
                    state.remain < int(esi_settings.ERROR_LIMIT_THRESHOLD)
                    and _last_status.failed(url)
                )
            ):
                wait = state.reset_in
            if not wait:
                return
            self._pause(route, None, wait, "error_limit", budget, EsiErrorLimitedError(reset=wait))

    def _reserve(self, route: Route, user: str, budget: list[float]):
        info = groups.lookup(route.method, route.template)
        if info is None:  # unknown: a probe bucket holding one call
            group, limit, window, headroom = (
                f"probe:{route.method}:{route.template}",
                2,
                PROBE_WINDOW,
                0.0,
            )
        elif info.group is None:
            return info, None, ""
        else:
            group, limit, window, headroom = info.group, info.limit, info.window, None
        while True:
            reservation = limiter.reserve(
                group, user, 2, limit, window, headroom, 0 if headroom == 0.0 else None
            )
            if reservation.wait == 0.0:
                return info, reservation, group
            self._pause(
                route,
                info.group if info else None,
                reservation.wait,
                "rate_limit",
                budget,
                EsiRateLimitedError(
                    retry_after=reservation.wait, group=info.group if info else None
                ),
            )

    # The access token and the Authorization header, here and in requests' frames below,
    # stay out of error reports.
    @sensitive_variables()
    def _attempt(self, route, url, params, body, *, last: bool) -> Answer | None:
        started = time.monotonic()
        key = cache.cache_key(url, params, self.character_id) if route.method == "GET" else None
        cached = cache.get(key) if key else None
        if cached is not None and cached.fresh:
            answer = _from_cache(cached)
            self._emit(route, None, cached.status, 0, None, started, True)
            return answer
        access_token = self.token.valid_access_token() if self.token is not None else None
        budget = [float(esi_settings.MAX_WAIT)]
        user = self._bucket_user(route)
        try:
            self._check_errors(route, url, budget)
            info, reservation, bucket = self._reserve(route, user, budget)
        except Exception as exc:
            if _redis_error(exc):
                raise self._limiter_down(route, None, exc) from exc
            raise
        request_headers = transport.base_headers()
        if access_token:
            request_headers["Authorization"] = f"Bearer {access_token}"
        if cached is not None and cached.etag:
            request_headers["If-None-Match"] = cached.etag
        try:
            response = transport.get_session().request(
                route.method,
                url,
                params=params,
                json=body,
                headers=request_headers,
                timeout=tuple(esi_settings.API_TIMEOUT),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            sent = isinstance(exc, requests.ReadTimeout)  # ESI may have counted it
            self._settle(route, user, info, reservation, bucket, None, 2 if sent else 0)
            raise EsiUnreachableError(f"ESI could not be reached: {exc}") from exc
        status = response.status_code
        limits = headers.rate_limit(response.headers)
        # X-Ratelimit-Used is what this answer cost; CCP's table when it is missing.
        cost = (
            limits.used if limits.used is not None and limits.used <= 100 else headers.cost(status)
        )
        wait = self._settle(route, user, info, reservation, bucket, response, cost)
        self._track_errors(response, url)
        answer = _parse(response, cached)
        self._emit(
            route,
            limits.group or (info.group if info else None),
            status,
            cost if limits.group or (info and info.group) else 0,
            limits.remaining,
            started,
            answer.from_cache,
        )
        if status == 429:
            self._signal_limited(route, limits.group, 429, wait)
            error = EsiRateLimitedError(retry_after=wait, group=limits.group)
            if last:
                raise error
            self._pause(route, limits.group, wait, "rate_limit", budget, error)
            return None
        if status == 420:
            reset = headers.error_limit(response.headers).reset or 60.0
            self._signal_limited(route, limits.group, 420, reset)
            raise EsiErrorLimitedError(reset=reset)
        if status >= 400:
            raise EsiResponseError(answer)
        if key and status == 200 and not answer.from_cache:
            _store(key, response, answer)
        elif key and status == 304 and cached is not None:
            cache.put(key, cached)
        return answer

    def _settle(self, route, user, info, reservation, bucket, response, actual) -> float:
        """Settle the reservation; the seconds the bucket is now blocked (429s only)."""
        if response is None:
            if reservation is not None:
                self._settle_safely(bucket, user, reservation.member, 2, actual)
            return 0.0
        status = response.status_code
        limits = headers.rate_limit(response.headers)
        retry_after = headers.retry_after(response.headers) if status == 429 else None
        backoff = status == 429 and retry_after is None
        learned = info
        if limits.group is not None:
            learned = groups.learn(
                route.method, route.template, limits.group, limits.limit, limits.window
            )
        elif status == 429:
            # Limited after all, but ESI did not say by which group: probe again.
            groups.unlearn(route.method, route.template)
            learned = None
        elif status < 400 and status != 304 and (info is None or info.group is not None):
            if info is not None:
                logger.warning(
                    "ESI sent no X-Ratelimit-Group for %s (group %s before); "
                    "treating it as unlimited.",
                    route.template,
                    info.group,
                )
            learned = groups.learn(route.method, route.template, None, None, None)
        target = learned.group if learned is not None else None
        # X-Ratelimit-Used is this answer's cost; Remaining tells what ESI counts in total.
        used = None
        if limits.remaining is not None and limits.limit is not None:
            used = max(0, limits.limit - limits.remaining)
        if target is not None:
            member, reserved = "late-" + uuid.uuid4().hex, 0
            if reservation is not None and bucket == target:
                member, reserved = reservation.member, 2
            elif reservation is not None:  # the probe (or an old group) is done with
                self._settle_safely(bucket, user, reservation.member, 2, 0)
            blocked = self._settle_safely(
                target,
                user,
                member,
                reserved,
                actual,
                limit=learned.limit,
                window=learned.window,
                used=used,
                retry_after=retry_after,
                backoff=backoff,
                default_window=learned.window,
            )
            return blocked or self._blocked_default(status, retry_after)
        if status == 429:
            # No group to block: block this route's probe bucket for everyone.
            probe = (
                bucket
                if reservation is not None and bucket.startswith("probe:")
                else f"probe:{route.method}:{route.template}"
            )
            blocked = self._settle_safely(
                probe,
                user,
                reservation.member if reservation is not None else "none",
                2 if reservation is not None and probe == bucket else 0,
                0,
                retry_after=retry_after,
                backoff=backoff,
                default_window=PROBE_WINDOW,
            )
            if reservation is not None and probe != bucket:
                self._settle_safely(bucket, user, reservation.member, 2, 0)
            return blocked or self._blocked_default(status, retry_after)
        if reservation is not None:  # unlimited route: give the probe back
            self._settle_safely(bucket, user, reservation.member, 2, 0)
        return 0.0

    @staticmethod
    def _blocked_default(status: int, retry_after: float | None) -> float:
        if status != 429:
            return 0.0
        return retry_after if retry_after is not None else 1.0

    def _settle_safely(self, group, user, member, reserved, actual, **kwargs) -> float:
        try:
            return limiter.settle(group, user, member, reserved, actual, **kwargs)
        except Exception as exc:
            if not _redis_error(exc):
                raise
            # The answer is good; the reservation simply stays until its window ends.
            logger.warning("Could not settle an ESI reservation (%s).", exc)
            return 0.0

    def _track_errors(self, response: requests.Response, url: str) -> None:
        status = response.status_code
        _last_status.note(url, status)
        found = headers.error_limit(response.headers)
        threshold = int(esi_settings.ERROR_LIMIT_THRESHOLD)
        if (
            status == 420
            or (status >= 400 and found.remain is not None)
            or (found.remain is not None and found.remain < 2 * threshold)
        ):
            try:
                limiter.record_errors(found.remain, found.reset, limited=status == 420)
            except Exception as exc:
                if not _redis_error(exc):
                    raise
                logger.warning("Could not share ESI's error-limit state (%s).", exc)

    def _emit(self, route, group, status, cost, remaining, started, from_cache) -> None:
        signals.esi_call.send(
            EsiSession,
            method=route.method,
            route=route.template,
            group=group,
            character_id=self.character_id,
            status=status,
            cost=cost,
            remaining=remaining,
            duration=time.monotonic() - started,
            from_cache=from_cache,
        )


def route_path(path: str) -> str:
    """The path as sent: ESI's current routes, without a version prefix or trailing slash."""
    from .routes import normalise_path

    return normalise_path(path)


def _from_cache(cached: cache.CachedAnswer) -> Answer:
    answer = _decode(cached.body, cached.headers)
    return Answer(
        answer[0],
        cached.status,
        dict(cached.headers),
        True,
        headers.pages(cached.headers, int(esi_settings.MAX_PAGES)),
        answer[1],
    )


def _decode(body: bytes, answer_headers: Any) -> tuple[Any, str]:
    text = body.decode("utf-8", "replace")
    if not body:
        return None, text
    try:
        return json.loads(text), text
    except ValueError:
        logger.warning(
            "ESI answered with a body that is not JSON (%d bytes); .data is None.", len(body)
        )
        return None, text


def _parse(response: requests.Response, cached: cache.CachedAnswer | None) -> Answer:
    if response.status_code == 304 and cached is not None:
        answer = _from_cache(cached)
        answer.headers = {**cached.headers, **response.headers}
        cached.headers = answer.headers
        age = headers.max_age(response.headers)
        if age is not None:
            cached.fresh_until = time.time() + age
        return answer
    data, text = _decode(response.content, response.headers)
    return Answer(
        data,
        response.status_code,
        dict(response.headers),
        False,
        headers.pages(response.headers, int(esi_settings.MAX_PAGES)),
        text,
    )


def _store(key: str, response: requests.Response, answer: Answer) -> None:
    etag = response.headers.get("ETag")
    age = headers.max_age(response.headers)
    if (etag is None and not age) or answer.data is None:
        return
    cache.put(
        key,
        cache.CachedAnswer(
            response.status_code,
            response.content,
            dict(response.headers),
            etag,
            time.time() + (age or 0.0),
        ),
    )
