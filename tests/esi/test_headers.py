"""Hostile values in ESI's headers: a safe fallback each, never an exception."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from esi_views.esi import headers


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("150/15m", (150, 900.0)),
        ("150/m", (150, 60.0)),
        ("10/2s", (10, 2.0)),
        ("0/15m", (None, None)),
        ("150/0m", (None, None)),
        ("-1/15m", (None, None)),
        ("lots/ever", (None, None)),
        ("1" * 50 + "/15m", (None, None)),
        ("", (None, None)),
    ],
)
def test_limit(raw, expected):
    parsed = headers.rate_limit({"X-Ratelimit-Limit": raw})
    assert (parsed.limit, parsed.window) == expected


@pytest.mark.parametrize("raw", ["-3", "1e999", "9" * 40, "x", "nan"])
def test_remaining_and_used_must_be_small_integers(raw):
    parsed = headers.rate_limit({"X-Ratelimit-Remaining": raw, "X-Ratelimit-Used": raw})
    assert (parsed.remaining, parsed.used) == (None, None)


@pytest.mark.parametrize(
    "raw, low, high",
    [
        ("5", 5, 5),
        ("0", 0, 0),
        ("-5", None, None),
        ("nan", None, None),
        ("soon", None, None),
        ("99999999", 3600, 3600),
        ("1e308", 3600, 3600),
    ],
)
def test_retry_after(raw, low, high):
    value = headers.retry_after({"Retry-After": raw})
    if low is None:
        assert value is None
    else:
        assert low <= value <= high


def test_retry_after_as_http_date():
    import time

    value = headers.retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert 28 <= value <= 31


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("3", 3),
        ("0", 1),
        ("-2", 1),
        ("x", 1),
        ("100000", 100),
        ("9" * 30, 1),
    ],
)
def test_pages(raw, expected):
    assert headers.pages({"X-Pages": raw}, maximum=100) == expected


@pytest.mark.parametrize("expires", ["yesterday", "", "Mon, 99 Foo 2025 99:99:99 GMT"])
def test_unreadable_expires_is_not_cached(expires):
    assert headers.max_age({"Expires": expires}) is None


def test_expires_is_measured_against_the_answers_date():
    date = "Wed, 01 Jan 2025 00:00:00 GMT"  # the server's clock, whatever ours says
    assert headers.max_age({"Date": date, "Expires": "Wed, 01 Jan 2025 00:05:00 GMT"}) == 300
    assert headers.max_age({"Date": date, "Expires": "Tue, 31 Dec 2024 00:00:00 GMT"}) == 0
    assert headers.max_age({"Date": date, "Expires": "Wed, 01 Jan 2100 00:00:00 GMT"}) == 86400


def test_error_limit_headers():
    parsed = headers.error_limit(
        {"X-ESI-Error-Limit-Remain": "-1", "X-ESI-Error-Limit-Reset": "999999"}
    )
    assert parsed.remain is None and parsed.reset is None
    parsed = headers.error_limit(
        {"X-ESI-Error-Limit-Remain": "7", "X-ESI-Error-Limit-Reset": "80000"}
    )
    assert (parsed.remain, parsed.reset) == (7, 3600.0)
