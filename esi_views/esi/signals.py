"""Django signals for watching ESI traffic (the package documentation lists their arguments).

- ``esi_call``: after every call, answered by ESI or by the cache. Arguments: ``method``,
  ``route`` (the template), ``group`` (None while unknown or unlimited), ``character_id``
  (None for public calls), ``status``, ``cost`` (tokens taken), ``remaining``
  (``X-Ratelimit-Remaining`` or None), ``duration`` (seconds), ``from_cache``.
- ``esi_delay``: a call could not go out at once. ``route``, ``group``, ``character_id``,
  ``reason`` (``"rate_limit"``, ``"error_limit"``, ``"limiter_unavailable"``), ``wait``
  (seconds) and ``action``: ``"wait"`` (slept here), ``"defer"`` (raised inside
  ``deferring()`` for the task to be re-scheduled) or ``"raise"``.
- ``esi_limited``: ESI answered 429 or 420. ``route``, ``group``, ``character_id``,
  ``status``, ``retry_after``.
- ``sso_call``: a call to the SSO's token endpoint ended. ``grant_type``, ``outcome``
  (``"ok"`` or the error class name), ``duration``.
"""

from __future__ import annotations

from django.dispatch import Signal

esi_call = Signal()
esi_delay = Signal()
esi_limited = Signal()
sso_call = Signal()
