"""Forgetting what the ESI client learned, between tests (used by the ``fake_esi`` fixture)."""

from __future__ import annotations

import logging

from . import client, groups, limiter


def clear_client_state() -> None:
    """Forget learned groups, URL outcomes and the error state; delete the shared budgets
    and cached answers of this package's keys (never anything else in Redis)."""
    groups.forget()
    limiter.forget_local_state()
    client._last_status = client._LastStatus()
    try:
        from ..conf import esi_settings
        from ..redis_scripts import get_redis

        redis = get_redis()
        for pattern in (esi_settings.LIMITER_KEY_PREFIX + "*", "*esi_views:esi:*"):
            keys = list(redis.scan_iter(match=pattern, count=500))
            for key in keys:
                redis.delete(key)
    except Exception as exc:  # no Redis: nothing shared to clear
        logging.getLogger("esi_views.esi").debug("Nothing cleared in Redis: %s", exc)
