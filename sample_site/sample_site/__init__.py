"""The django-esi-views demo project (not shipped in the wheel)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
