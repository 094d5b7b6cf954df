"""Encryption at rest for tokens: Fernet, with key rotation through MultiFernet.

``ESI_TOKEN_ENCRYPTION_KEYS`` lists secrets, newest first: the first encrypts, all
decrypt. Each secret is any string; a Fernet key is derived from it with HKDF, so a
Fernet key, a passphrase or Django's SECRET_KEY all work. The default is
``[SECRET_KEY, *SECRET_KEY_FALLBACKS]``, so rotating Django's secret the documented
way keeps tokens readable; ``manage.py esi_rotate_keys`` then re-encrypts them.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .exceptions import TokenDecryptionError  # defined there, still importable from here

_HKDF_INFO = b"django-esi-views token encryption v1"


def _derive(secret: str | bytes) -> Fernet:
    material = secret.encode() if isinstance(secret, str) else secret
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


def configured_secrets() -> tuple[str | bytes, ...]:
    secrets = getattr(settings, "ESI_TOKEN_ENCRYPTION_KEYS", None)
    if secrets is None:
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if isinstance(secrets, str | bytes):
        raise ImproperlyConfigured("ESI_TOKEN_ENCRYPTION_KEYS must be a list of secrets.")
    secrets = tuple(s for s in secrets if s)
    if not secrets:
        raise ImproperlyConfigured("ESI_TOKEN_ENCRYPTION_KEYS (or SECRET_KEY) is empty.")
    return secrets


@functools.lru_cache(maxsize=8)
def _multifernet(secrets: tuple[str | bytes, ...]) -> MultiFernet:
    return MultiFernet([_derive(s) for s in secrets])


def _cipher() -> MultiFernet:
    # Keyed by the secrets themselves, so override_settings and rotation just work.
    return _multifernet(configured_secrets())


def encrypt(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return _cipher().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise TokenDecryptionError(
            "A stored EVE token cannot be decrypted with any configured key. Add the key it "
            "was written with to ESI_TOKEN_ENCRYPTION_KEYS (or SECRET_KEY_FALLBACKS)."
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first key (decrypting with any)."""
    try:
        return _cipher().rotate(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise TokenDecryptionError("A stored EVE token cannot be decrypted for rotation.") from exc
