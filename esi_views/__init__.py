"""EVE Online SSO tokens for Django: views, DRF and Celery."""

__version__ = "0.1.0.dev0"
