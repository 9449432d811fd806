"""The compose file and Dockerfile against the code, without Docker (tests/compose/ runs the stack for real)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from store.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_has_its_services() -> None:
    assert set(SERVICES) == {"api", "worker", "redis", "postgres", "migrate"}
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    for name in ("redis", "postgres", "api"):
        assert SERVICES[name]["healthcheck"]["test"], name


def test_start_up_order_waits_for_health_and_migration() -> None:
    assert SERVICES["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        deps = SERVICES[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"


def test_worker_is_scalable() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:3] == ["celery", "-A", "worker.celery_app"]
    queue = worker["command"][worker["command"].index("-Q") + 1]
    assert queue == Settings.model_fields["queue"].default


def test_environment_matches_the_settings_the_code_reads() -> None:
    fields = {f"NETREDUCE_{name.upper()}" for name in Settings.model_fields}
    for name in ("api", "worker", "migrate"):
        env = SERVICES[name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["NETREDUCE_DATABASE_URL"].startswith("postgresql+psycopg2://netreduce:netreduce@postgres:5432/")
        assert env["NETREDUCE_BROKER_URL"].startswith("redis://redis:6379")
        Settings(**{k.removeprefix("NETREDUCE_").lower(): v for k, v in env.items() if v and "${" not in v})
    pg = SERVICES["postgres"]["environment"]
    url = SERVICES["api"]["environment"]["NETREDUCE_DATABASE_URL"]
    assert url.endswith(f"/{pg['POSTGRES_DB']}") and f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@" in url


def test_api_and_worker_share_the_artifact_volume() -> None:
    target = SERVICES["api"]["environment"]["NETREDUCE_ARTIFACT_DIR"]
    for name in ("api", "worker"):
        assert f"artifacts:{target}" in SERVICES[name]["volumes"]


def test_dockerfile_installs_cpu_torch_and_copies_what_exists() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu\n" in text
    assert '--index-url "$TORCH_INDEX_URL" $extra torch==2.14.1 torchvision==0.29.1' in text
    copied: set[str] = set()
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        sources = line.split()[:-1]
        for src in sources:
            assert (ROOT / src).exists(), src
        copied.update(sources)
    for package in ("compress", "store", "api", "worker", "cli", "migrations", "alembic.ini"):
        assert package in copied
    api_cmd = SERVICES["api"]["command"]
    assert "api.main:app" in api_cmd


def test_override_holds_only_what_the_network_forces() -> None:
    """docker-compose.local-network.yml: images, build arguments, and the worker's failure detection."""
    override = yaml.safe_load((ROOT / "docker-compose.local-network.yml").read_text())["services"]
    assert set(override) <= set(SERVICES)
    assert set(override["migrate"]) == {"build"}
    assert set(override["migrate"]["build"]["args"]) == {"BASE_IMAGE", "TORCH_INDEX_URL", "TORCH_EXTRA_INDEX_URL"}
    for name in ("redis", "postgres"):
        assert set(override[name]) == {"image"}
    env = override["worker"]["environment"]
    fields = {f"NETREDUCE_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields
    Settings(**{k.removeprefix("NETREDUCE_").lower(): v for k, v in env.items()})
