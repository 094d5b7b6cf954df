"""Rate parsing, bucket keys and the errors given at decoration time."""

from __future__ import annotations

import pytest
from django.test import override_settings

from esi_views.decorators import rate_limited_task
from esi_views.ratelimit import (
    InvalidRateError,
    Rate,
    RateLimitUsageError,
    bucket_key,
    parse_rate,
)


@pytest.mark.parametrize(
    ("text", "count", "window", "interval_us"),
    [
        ("10/s", 10, 1, 100_000),
        ("50/s", 50, 1, 20_000),
        ("100/m", 100, 60, 600_000),
        ("1/15m", 1, 900, 900_000_000),
        ("500/h", 500, 3600, 7_200_000),
        ("2/d", 2, 86400, 43_200_000_000),
        ("1/10s", 1, 10, 10_000_000),
        (" 3 / 2h ", 3, 7200, 2_400_000_000),
        ("3/s", 3, 1, 333_334),  # rounded up: never closer than window / N
    ],
)
def test_parse_rate(text, count, window, interval_us):
    rate = parse_rate(text)
    assert rate == Rate(count, window)
    assert rate.interval_us == interval_us
    assert rate.interval_us * count >= window * 1_000_000


@pytest.mark.parametrize(
    "text", ["ten/m", "0/s", "5/x", "5", "", "5/0s", "-1/s", "1.5/s", "5/ms", None, 5]
)
def test_malformed_rates_fail_at_decoration(text):
    with pytest.raises(InvalidRateError, match="Invalid rate"):
        rate_limited_task(text)
    assert issubclass(InvalidRateError, ValueError)


def test_bucket_keys():
    assert bucket_key("app.tasks.fetch") == "esi_views:ratelimit:app.tasks.fetch"
    one = bucket_key("t", {"corp_id": 1})
    assert one == 'esi_views:ratelimit:t:{"corp_id":1}'
    assert bucket_key("t", {"corp_id": "1"}) != one  # 1 and "1" are different buckets
    assert bucket_key("t", {"a": 1, "b": 2}) == bucket_key("t", {"b": 2, "a": 1})
    long = bucket_key("t", {"blob": "x" * 500})
    assert long.startswith("esi_views:ratelimit:t:sha1:") and len(long) < 100
    with override_settings(ESI_RATE_LIMIT_KEY_PREFIX="site:"):
        assert bucket_key("t") == "site:t"


def test_keys_must_be_task_parameters():
    with pytest.raises(RateLimitUsageError, match=r"\['corp'\] are not parameters"):

        @rate_limited_task("1/s", keys=["corp"])
        def task(self, corp_id):
            pass


def test_keys_may_come_through_var_keyword():
    @rate_limited_task("1/s", keys=["corp_id"])
    def task(self, **kwargs):
        pass

    assert task.rate_limit_keys == ("corp_id",)


@pytest.mark.parametrize(
    "func",
    [lambda: None, lambda corp_id: None, lambda *args: None, lambda *, self: None],
    ids=["no-params", "not-self", "varargs", "keyword-only-self"],
)
def test_first_parameter_must_be_the_bound_task(func):
    with pytest.raises(RateLimitUsageError, match="bind=True"):
        rate_limited_task("1/s")(func)


def test_unbound_task_is_a_clear_error_at_first_call():
    @rate_limited_task("1/s")
    def task(self, x):
        return x

    # What happens when @app.task forgot bind=True: the first argument is not a Task.
    with pytest.raises(RateLimitUsageError, match="only works on bound tasks"):
        task(42, 1)


def test_decorated_function_keeps_its_identity():
    @rate_limited_task("10/m", keys="corp_id")
    def fetch(self, corp_id):
        """Docstring."""

    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Docstring."
    assert fetch.rate == Rate(10, 60)
    assert fetch.rate_limit_keys == ("corp_id",)


def test_bucket_keys_are_the_same_in_every_process_for_equal_values():
    import os
    import subprocess
    import sys

    script = (
        "from django.conf import settings; settings.configure(); "
        "from esi_views.ratelimit import bucket_key; "
        "print(bucket_key('t', {'ids': {3, 'a', 1, 'b', 2}, 'm': {1: 'x', 'b': 2}}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            check=True,
        ).stdout
        for seed in range(4)
    }
    assert len(keys) == 1


def test_bucket_keys_refuse_values_without_a_stable_form():
    import pytest

    from esi_views.ratelimit import RateLimitUsageError

    class Character:
        pass

    with pytest.raises(RateLimitUsageError, match="JSON-like"):
        bucket_key("t", {"character": Character()})
