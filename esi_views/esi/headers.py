"""Reading ESI's limit headers without trusting them.

Every parser returns ``None`` for a missing or malformed value (and logs the malformed
ones once per value), so a bad answer falls back to what we already know instead of
crashing or spinning. The fallbacks are in the package documentation ("Calling ESI").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

logger = logging.getLogger("esi_views.esi")

_LIMIT = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{0,6})\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GROUP = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# Longest Retry-After / error-limit reset we believe; longer ones are capped (logged).
MAX_BELIEVED_WAIT = 3600.0


def _warn(what: str, value: str) -> None:
    logger.warning("ESI sent a malformed %s header: %r; ignoring it.", what, value[:100])


def _int(headers: Mapping[str, str], name: str, maximum: int = 10**9) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or int(value) > maximum:
        _warn(name, value)
        return None
    return int(value)


@dataclass(frozen=True)
class RateLimitHeaders:
    group: str | None
    limit: int | None  # tokens per window
    window: float | None  # seconds
    remaining: int | None
    used: int | None


def rate_limit(headers: Mapping[str, str]) -> RateLimitHeaders:
    group = headers.get("X-Ratelimit-Group")
    if group is not None and not _GROUP.match(group):
        _warn("X-Ratelimit-Group", group)  # it becomes part of a Redis key: keep it tame
        group = None
    limit = window = None
    raw = headers.get("X-Ratelimit-Limit")
    if raw is not None:
        found = _LIMIT.match(raw)
        if found and int(found[1]) > 0 and int(found[2] or 1) > 0:
            limit = int(found[1])
            window = float(int(found[2] or 1) * _UNIT[found[3]])
        else:
            _warn("X-Ratelimit-Limit", raw)
    return RateLimitHeaders(
        group,
        limit,
        window,
        _int(headers, "X-Ratelimit-Remaining"),
        _int(headers, "X-Ratelimit-Used"),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date); None if absent or nonsense.

    A negative value is treated as absent (the caller then backs off); a huge one is
    capped at :data:`MAX_BELIEVED_WAIT`.
    """
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            _warn("Retry-After", raw)
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or negative
        _warn("Retry-After", raw)
        return None
    if seconds > MAX_BELIEVED_WAIT:
        _warn("Retry-After", raw)
        return MAX_BELIEVED_WAIT
    return seconds


@dataclass(frozen=True)
class ErrorLimitHeaders:
    remain: int | None
    reset: float | None


def error_limit(headers: Mapping[str, str]) -> ErrorLimitHeaders:
    raw_reset = _int(headers, "X-ESI-Error-Limit-Reset", maximum=86400)
    reset = None if raw_reset is None else float(min(raw_reset, MAX_BELIEVED_WAIT))
    return ErrorLimitHeaders(_int(headers, "X-ESI-Error-Limit-Remain"), reset)


def pages(headers: Mapping[str, str], maximum: int) -> int:
    """``X-Pages`` (1 when absent or malformed; capped at ``maximum``, logged)."""
    value = _int(headers, "X-Pages")
    if value is None or value < 1:
        return 1
    if value > maximum:
        logger.warning(
            "ESI announced %d pages; fetching only the first %d (ESI_MAX_PAGES).", value, maximum
        )
        return maximum
    return value


def max_age(headers: Mapping[str, str]) -> float | None:
    """Seconds until ``Expires``, measured against the answer's own ``Date`` (no clock skew)."""
    expires = headers.get("Expires")
    if not expires:
        return None
    try:
        until = parsedate_to_datetime(expires)
        date_header = headers.get("Date")
        now = parsedate_to_datetime(date_header) if date_header else datetime.now(UTC)
    except (TypeError, ValueError, IndexError):
        _warn("Expires", expires)
        return None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, min((until - now).total_seconds(), 86400.0))


def cost(status: int) -> int:
    """Tokens a response with this status takes from its bucket (CCP's table)."""
    if 200 <= status < 300:
        return 2
    if 300 <= status < 400:
        return 1
    if 400 <= status < 500:
        return 5
    return 0
