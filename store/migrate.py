"""``alembic upgrade head`` from Python (the run command and tests), same as the CLI step."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


def alembic_config(database_url: str | None = None, quiet: bool = True) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    if database_url:
        cfg.attributes["database_url"] = database_url
    cfg.attributes["skip_logging"] = quiet
    return cfg


def upgrade_head(database_url: str | None = None, quiet: bool = True) -> None:
    """Create or upgrade the schema at ``database_url`` (default: the settings' URL)."""
    command.upgrade(alembic_config(database_url, quiet), "head")


def downgrade_base(database_url: str | None = None, quiet: bool = True) -> None:
    command.downgrade(alembic_config(database_url, quiet), "base")
