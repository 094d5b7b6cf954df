"""HTTP sessions for talking to the EVE SSO: timeouts, retries, User-Agent.

Two retry policies, because retrying is only safe when a repeat cannot do harm:

- ``IDEMPOTENT`` (JWKS, revoke, refresh): retried on connection errors and on
  429/502/503/504, honouring ``Retry-After`` up to ``ESI_SSO_MAX_RETRY_AFTER``.
  Read timeouts are retried only for GETs: a refresh that may have reached the SSO
  could have rotated the refresh token, and repeating it would look like a dead token.
- ``ONCE`` (code exchange): a code is single use, so it is retried only when the
  connection was never made (the request cannot have reached the server).
"""

from __future__ import annotations

import functools
import threading
from enum import Enum
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError, ResponseError
from urllib3.exceptions import TimeoutError as urllib3_timeout
from urllib3.util.retry import Retry

from . import __version__
from .conf import esi_settings
from .exceptions import (
    DEAD_TOKEN_ERRORS,
    InvalidClientError,
    MissingSettingError,
    SSOError,
    SSOMalformedResponseError,
    SSORateLimitedError,
    SSORejectedError,
    SSOServerError,
    SSOTimeoutError,
    SSOTransientError,
    SSOUnreachableError,
)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_HEADER = 86400.0


class RetryPolicy(Enum):
    IDEMPOTENT = "idempotent"
    ONCE = "once"


class _CappedRetry(Retry):
    """A urllib3 Retry that gives up instead of sleeping through a long Retry-After.

    The response is then handed back as it is, so the caller can raise a transient
    error that carries the server's Retry-After.
    """

    max_retry_after: float = 10.0

    def new(self, **kw):
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        return retry

    def is_retry(self, method, status_code, has_retry_after=False):
        # A gateway's 502/504 may come after the SSO acted on a POST (and rotated the
        # refresh token): only 429 and 503 say for sure that it did not.
        if method.upper() != "GET" and status_code in (502, 504):
            return False
        return super().is_retry(method, status_code, has_retry_after)

    def increment(
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ):
        if error is not None and self._is_read_error(error) and (method or "").upper() != "GET":
            # The request was sent: a POST may already have been acted on.
            raise MaxRetryError(_pool, url, error) from error
        if response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after is not None and retry_after > self.max_retry_after:
                raise MaxRetryError(
                    _pool, url, ResponseError("Retry-After longer than we wait in-process")
                )
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _retry(policy: RetryPolicy) -> Retry:
    attempts = int(esi_settings.SSO_MAX_RETRIES)
    common = functools.partial(
        _CappedRetry,
        total=attempts,
        connect=attempts,
        backoff_factor=float(esi_settings.SSO_BACKOFF_FACTOR),
        raise_on_status=False,
        raise_on_redirect=False,
        redirect=0,
    )
    if policy is RetryPolicy.ONCE:
        retry = common(read=0, status=0, other=0)
    else:
        retry = common(
            read=attempts,
            status=attempts,
            other=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
            respect_retry_after_header=True,
        )
    retry.max_retry_after = float(esi_settings.SSO_MAX_RETRY_AFTER)
    return retry


def user_agent() -> str:
    contact = esi_settings.USER_CONTACT_EMAIL or "no contact set"
    return (
        f"django-esi-views/{__version__} ({contact}; +https://pypi.org/project/django-esi-views/)"
    )


class _SSOSession(OAuth2Session):
    """authlib's session, reading the environment (proxies, CA bundle) once per URL.

    requests scans os.environ for proxy settings on every request, which costs more
    CPU than the rest of a refresh; our sessions talk to a handful of fixed URLs, and
    are rebuilt when our settings change.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._environment: dict[str, Any] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if url not in self._environment:
            self._environment[url] = super().merge_environment_settings(url, {}, None, None, None)
        return dict(self._environment[url])


def _build_session(policy: RetryPolicy) -> OAuth2Session:
    for name in ("SSO_CLIENT_ID", "SSO_CLIENT_SECRET"):
        if not getattr(esi_settings, name):
            raise MissingSettingError(
                f"ESI_{name} is not set; see 'Settings' in the django-esi-views documentation."
            )
    session = _SSOSession(
        client_id=esi_settings.SSO_CLIENT_ID,
        client_secret=esi_settings.SSO_CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
        redirect_uri=esi_settings.SSO_CALLBACK_URL or None,
        code_challenge_method="S256",
        default_timeout=tuple(esi_settings.SSO_TIMEOUT),
    )
    session.headers["User-Agent"] = user_agent()
    adapter = HTTPAdapter(max_retries=_retry(policy), pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


_local = threading.local()


def get_session(policy: RetryPolicy) -> OAuth2Session:
    """A keep-alive session per thread and policy, rebuilt when our settings change.

    requests.Session is not documented as thread-safe, hence one per thread; reusing
    it keeps connections alive across many refreshes.
    """
    key = (
        policy,
        esi_settings.SSO_CLIENT_ID,
        esi_settings.SSO_CLIENT_SECRET,
        esi_settings.SSO_CALLBACK_URL,
        tuple(esi_settings.SSO_TIMEOUT),
        esi_settings.SSO_MAX_RETRIES,
        esi_settings.SSO_BACKOFF_FACTOR,
        esi_settings.SSO_MAX_RETRY_AFTER,
        esi_settings.USER_CONTACT_EMAIL,
    )
    sessions: dict = _local.__dict__.setdefault("sessions", {})
    session = sessions.get(key)
    if session is None:
        for stale_key in [k for k in sessions if k[0] is policy]:
            sessions.pop(stale_key).close()
        session = sessions[key] = _build_session(policy)
    return session


def transport_error(exc: requests.RequestException) -> SSOTransientError:
    """Our error for a request that got no HTTP answer at all."""
    # urllib3 wraps the last failure in MaxRetryError; requests wraps that again.
    reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else exc
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, but it is a refusal.
    timed_out = isinstance(exc, requests.Timeout) or isinstance(reason, urllib3_timeout)
    if timed_out and not isinstance(reason, NewConnectionError):
        return SSOTimeoutError(f"The EVE SSO did not answer in time: {reason}")
    return SSOUnreachableError(f"The EVE SSO could not be reached: {reason}")


def retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = Retry().parse_retry_after(value)
    except (InvalidHeader, ValueError, OverflowError):
        return None
    # A day at most: a huge integer would overflow float() and mean nothing anyway.
    return max(0.0, min(float(min(seconds, MAX_RETRY_AFTER_HEADER)), MAX_RETRY_AFTER_HEADER))


def json_object(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def json_answer(response: requests.Response, what: str) -> dict:
    """The JSON object of a successful answer; otherwise the error that answer stands for."""
    error = status_error(response)
    if error is not None:
        raise error
    body = json_object(response)
    if body is None:
        raise SSOMalformedResponseError(f"The EVE SSO's {what} is not a JSON object.")
    return body


def status_error(response: requests.Response) -> SSOError | None:
    """Our error for an HTTP answer that is not a success, or None for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    wait = retry_after(response)
    if status == 429:
        return SSORateLimitedError(
            "The EVE SSO is rate limiting us.", retry_after=wait, status=status
        )
    if status >= 500:
        return SSOServerError(
            f"The EVE SSO answered HTTP {status}.", retry_after=wait, status=status
        )
    body = json_object(response) or {}
    code = body.get("error") if isinstance(body.get("error"), str) else None
    description = body.get("error_description")
    description = description if isinstance(description, str) else None
    if code in DEAD_TOKEN_ERRORS:
        return DEAD_TOKEN_ERRORS[code](error=code, description=description, status=status)
    if code in ("invalid_client", "unauthorized_client") or (status == 401 and code is None):
        return InvalidClientError(
            message="The EVE SSO rejected our client id or secret; check ESI_SSO_CLIENT_ID and "
            "ESI_SSO_CLIENT_SECRET.",
            error=code,
            description=description,
            status=status,
        )
    if code:
        return SSORejectedError(
            message=f"The EVE SSO refused the request: {code}.",
            error=code,
            description=description,
            status=status,
        )
    return SSOMalformedResponseError(
        f"The EVE SSO answered HTTP {status} without an OAuth error.", status=status
    )
