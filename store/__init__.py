"""Shared by api/ and worker/: settings, engine and session, SQLModel tables, artifact storage.

Never imported by compress/ (the library stays free of SQL, FastAPI and Celery).
"""
