"""Prometheus metrics for ESI and SSO traffic (``pip install django-esi-views[metrics]``).

Call :func:`install` once, e.g. in your ``AppConfig.ready()``; it connects receivers to
the signals of :mod:`esi_views.esi.signals` and updates these series (the package
documentation, "Calling ESI", has example queries):

- ``esi_views_esi_calls_total{group,status,from_cache}`` and
  ``esi_views_esi_call_seconds{group}`` (histogram, calls that reached ESI);
- ``esi_views_esi_tokens_total{group}``: rate-limit tokens spent;
- ``esi_views_esi_limited_total{group,status}``: 429 and 420 answers;
- ``esi_views_esi_delays_total{reason,action}`` and ``esi_views_esi_delay_seconds``:
  waits, deferrals (``action="defer"``) and refusals;
- ``esi_views_sso_calls_total{grant_type,outcome}`` and
  ``esi_views_sso_call_seconds{grant_type}``: token refreshes and their latency.

Expose them as you expose any prometheus-client registry (``prometheus_client.
start_http_server``, ``make_wsgi_app``, or django-prometheus's view).
"""

from __future__ import annotations

from typing import Any

from . import signals

__all__ = ["install"]

_installed: dict[int, Any] = {}


def install(registry: Any = None) -> Any:
    """Create the metrics in ``registry`` (the default one) and start counting; idempotent.

    Returns the object holding the metrics (attributes named as above, without prefix).
    """
    try:
        import prometheus_client as prom
    except ImportError as exc:  # pragma: no cover - exercised by users without the extra
        raise ImportError(
            "esi_views.esi.metrics needs prometheus-client: pip install 'django-esi-views[metrics]'"
        ) from exc
    registry = registry if registry is not None else prom.REGISTRY
    if id(registry) in _installed:
        return _installed[id(registry)]
    m = _Metrics(prom, registry)
    _installed[id(registry)] = m
    uid = f"esi_views.metrics.{id(registry)}"
    signals.esi_call.connect(m.on_call, weak=False, dispatch_uid=uid)
    signals.esi_delay.connect(m.on_delay, weak=False, dispatch_uid=uid)
    signals.esi_limited.connect(m.on_limited, weak=False, dispatch_uid=uid)
    signals.sso_call.connect(m.on_sso, weak=False, dispatch_uid=uid)
    return m


class _Metrics:
    def __init__(self, prom: Any, registry: Any) -> None:
        p = "esi_views_"
        r = {"registry": registry}
        self.calls = prom.Counter(
            p + "esi_calls",
            "ESI calls answered (by ESI or the cache).",
            ["group", "status", "from_cache"],
            **r,
        )
        self.call_seconds = prom.Histogram(
            p + "esi_call_seconds", "ESI call duration.", ["group"], **r
        )
        self.tokens = prom.Counter(p + "esi_tokens", "Rate-limit tokens spent.", ["group"], **r)
        self.limited = prom.Counter(
            p + "esi_limited", "ESI answers 429 and 420.", ["group", "status"], **r
        )
        self.delays = prom.Counter(
            p + "esi_delays", "Calls that could not go out at once.", ["reason", "action"], **r
        )
        self.delay_seconds = prom.Histogram(
            p + "esi_delay_seconds",
            "How long those calls had to wait.",
            ["reason"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
            **r,
        )
        self.sso_calls = prom.Counter(
            p + "sso_calls", "Calls to the SSO token endpoint.", ["grant_type", "outcome"], **r
        )
        self.sso_seconds = prom.Histogram(
            p + "sso_call_seconds", "SSO token endpoint latency.", ["grant_type"], **r
        )

    def on_call(
        self,
        *,
        group: str | None,
        status: int,
        cost: int,
        duration: float,
        from_cache: bool,
        **_: Any,
    ) -> None:
        group = group or "none"
        self.calls.labels(group, str(status), "true" if from_cache else "false").inc()
        if not from_cache or cost:
            self.call_seconds.labels(group).observe(duration)
        if cost:
            self.tokens.labels(group).inc(cost)

    def on_delay(self, *, reason: str, action: str, wait: float, **_: Any) -> None:
        self.delays.labels(reason, action).inc()
        self.delay_seconds.labels(reason).observe(wait)

    def on_limited(self, *, group: str | None, status: int, **_: Any) -> None:
        self.limited.labels(group or "none", str(status)).inc()

    def on_sso(self, *, grant_type: str, outcome: str, duration: float, **_: Any) -> None:
        self.sso_calls.labels(grant_type, outcome).inc()
        self.sso_seconds.labels(grant_type).observe(duration)
