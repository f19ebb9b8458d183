"""The container files, checked statically (no Docker engine here): the Dockerfile's stages and the compose trial."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from videoworker.config import load_settings
from videoworker.runtime import STOP_MARGIN

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> dict[str, str]:
    """Stage name → its instructions."""
    found: dict[str, str] = {}
    for chunk in re.split(r"(?m)^(?=FROM )", DOCKERFILE)[1:]:
        name = re.match(r"FROM \S+(?: AS (\w+))?", chunk)
        assert name is not None
        found[name.group(1) or "(unnamed)"] = chunk
    return found


def test_the_base_image_is_pinned_by_digest_with_a_note_on_bumping_it() -> None:
    """Every FROM names the pinned base (or an earlier stage); the file says how to bump the digest."""
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}\n", DOCKERFILE)
    for line in re.findall(r"(?m)^FROM (\S+)", DOCKERFILE):
        assert line in ("${PYTHON_IMAGE}", "build"), line
    assert "docker inspect --format '{{index .RepoDigests 0}}'" in DOCKERFILE


def test_build_tools_and_dev_tools_stay_out_of_the_runtime_stage() -> None:
    """Compilers live in the build stage, the simulator in its own; the runtime copies only the built venv."""
    found = stages()
    assert set(found) == {"build", "simulator", "runtime"}
    assert "build-essential" in found["build"]
    runtime = found["runtime"]
    assert "build-essential" not in runtime and "devtools" not in runtime and "pip install" not in runtime
    assert re.findall(r"(?m)^COPY .*", runtime) == ["COPY --from=build /opt/videoworker /opt/videoworker"]
    assert "devtools" not in found["build"]
    assert "COPY devtools" in found["simulator"]


def test_the_runtime_stage_is_ready_for_an_orchestrator() -> None:
    """Non-root, secrets from /run/secrets, health on 0.0.0.0 with a HEALTHCHECK, SIGTERM as the stop signal."""
    runtime = stages()["runtime"]
    assert "USER videoworker" in runtime and "CREDENTIALS_DIRECTORY=/run/secrets" in runtime
    assert "VIDEOWORKER_HEALTH_HOST=0.0.0.0" in runtime and 'CMD ["videoworker", "check"]' in runtime
    assert "STOPSIGNAL SIGTERM" in runtime and "ARG PLUGINS" in DOCKERFILE


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_the_compose_trial_has_every_service_with_health_checks() -> None:
    """RabbitMQ, PostgreSQL, the simulator and two videoworker instances; the stateful ones and workers checked."""
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "postgres", "simulator", "videoworker-a", "videoworker-b"}
    for name in ("rabbitmq", "postgres", "videoworker-a", "videoworker-b"):
        assert services[name]["healthcheck"]["test"], name
    assert services["simulator"]["build"]["target"] == "simulator"


def test_the_two_instances_share_the_postgresql_ledger_and_take_secrets_from_files() -> None:
    """Both read the same ledger_url secret; no secret is in the environment; every secret file exists."""
    spec = compose()
    grace = load_settings(None).shutdown_grace
    for name in ("videoworker-a", "videoworker-b"):
        service = spec["services"][name]
        assert service["build"]["target"] == "runtime"
        assert {"openrouter_api_key", "amqp_url", "ledger_url"} <= set(service["secrets"])
        environment = service["environment"]
        assert not any(re.search(r"KEY|PASSWORD|SECRET|AMQP_URL|LEDGER_URL", key) for key in environment), environment
        assert float(str(service["stop_grace_period"]).rstrip("s")) > grace + STOP_MARGIN
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (
        spec["services"]["videoworker-a"]["environment"]["VIDEOWORKER_INSTANCE_ID"]
        != (spec["services"]["videoworker-b"]["environment"]["VIDEOWORKER_INSTANCE_ID"])
    )
    for secret in spec["secrets"].values():
        assert (ROOT / secret["file"]).is_file(), secret
    assert (ROOT / "config/compose-secrets/ledger_url").read_text().startswith("postgresql://")
