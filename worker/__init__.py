"""Celery worker: tasks take a job id, re-read the job from the database and call compress/."""
