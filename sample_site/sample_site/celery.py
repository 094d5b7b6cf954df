"""Celery for the demo: eager (in-process) unless DEMO_CELERY_BROKER_URL is set.

With a broker, start a worker from the sample_site folder::

    DEMO_CELERY_BROKER_URL=redis://127.0.0.1:6379/2 DEMO_REDIS_URL=redis://127.0.0.1:6379/3 \
        ../.venv/bin/celery -A sample_site worker -l info
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_site.settings")

app = Celery("sample_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
