# Load the Celery app with Django so shared tasks (and the admin's "run task" action) use it.
from console.celery import app as celery_app

__all__ = ["celery_app"]
