"""A text field that is plaintext in Python and Fernet ciphertext in the database.

Decryption is lazy: a loaded row keeps the ciphertext until the attribute is first
read, so listing 100 tokens by name decrypts nothing. ``values()``/``values_list()``
bypass model attributes and return the stored ciphertext.
"""

from __future__ import annotations

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from . import crypto


class Ciphertext(str):
    """A value exactly as stored; saving it again writes it back unchanged."""

    __slots__ = ()


class _DecryptingAttribute(DeferredAttribute):
    # A data descriptor (it has __set__), so reads come here even once the instance
    # holds a value; Django's DeferredAttribute alone is bypassed by instance.__dict__.
    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Ciphertext):
            value = crypto.decrypt(value)
            instance.__dict__[self.field.attname] = value
        return value


class EncryptedTextField(models.TextField):
    """Encrypted at rest (see ``crypto``). Not usable in lookups: ciphertext is randomised."""

    description = "Text encrypted at rest"
    descriptor_class = _DecryptingAttribute

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return Ciphertext(value)

    def pre_save(self, model_instance, add):
        # The raw value: an untouched secret is written back as stored, undecrypted.
        if self.attname in model_instance.__dict__:
            return model_instance.__dict__[self.attname]
        return super().pre_save(model_instance, add)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "" or isinstance(value, Ciphertext):
            return value
        return crypto.encrypt(value)
