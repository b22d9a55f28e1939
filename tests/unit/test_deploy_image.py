"""The container image and the local stack, checked offline: the Dockerfile with hadolint
and against the rest of the repo, deploy/docker-compose.yml against the Compose
Specification's attributes, the Dockerfile and the settings (no Docker engine needed).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import yaml

from fetcher.config import load_settings
from fetcher.server._app import SERVICE_NAME
from tests.unit.deploy_support import (
    DOCKERFILE,
    IMAGE_SETTINGS,
    ROOT,
    arg_default,
    dockerfile_uid,
    instructions,
    stages,
    tool,
)

COMPOSE = ROOT / "deploy" / "docker-compose.yml"


def test_dockerfile_passes_hadolint() -> None:
    cmd = [str(tool("hadolint")), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runtime_stage() -> None:
    all_stages = stages()
    assert len(all_stages) >= 4, "expected global ARGs + probe, builder and runtime stages"
    final = instructions(all_stages[-1])
    base = final[0][1].split()[0]
    assert base.replace("${PYTHON_IMAGE}", arg_default("PYTHON_IMAGE")) == "python:3.11-slim"
    body = " ".join(arg for _, arg in final)
    for compiler in ("build-essential", "gcc", "apt-get install", "pip install"):
        assert compiler not in body, f"the runtime stage must not run {compiler!r}"
    ops = dict(final)
    assert json.loads(ops["ENTRYPOINT"]) == ["fetcher"]
    assert json.loads(ops["CMD"]) == ["serve", "--settings", "/etc/fetcher/settings.toml"]
    assert ops["EXPOSE"].split() == ["50051", "9100"]
    env = dict(item.split("=", 1) for item in shlex.split(ops["ENV"]))
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["FETCHER__SERVER__LISTEN"] == "0.0.0.0:50051"
    assert env["FETCHER__SERVER__METRICS_LISTEN"] == "0.0.0.0:9100"
    assert dockerfile_uid() > 0
    probe = json.loads(ops["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert probe[0] == "grpc_health_probe"
    assert "-addr=127.0.0.1:50051" in probe and f"-service={SERVICE_NAME}" in probe


def test_dockerfile_probe_is_the_pinned_module() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pinned = re.search(r'"(github\.com/grpc-ecosystem/grpc-health-probe@v[\d.]+) ', setup)
    assert pinned, "scripts/setup.sh: GO_TOOLS has no grpc-health-probe pin"
    assert f"go install -trimpath -ldflags=\"-s -w\" {pinned.group(1)}" in " ".join(
        stages()[1]
    ), "Dockerfile: build grpc-health-probe at the version scripts/setup.sh pins"


def test_dockerfile_copies_exist_and_are_not_ignored() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".tools", "build", "data", ".pytest_cache"} <= ignored
    for stage in stages()[1:]:
        for op, arg in instructions(stage):
            if op != "COPY" or arg.startswith("--from="):
                continue
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile COPY {source}: no such path"
                assert not any(source == p or source.startswith(p + "/") for p in ignored), (
                    f".dockerignore excludes {source}, which the Dockerfile copies"
                )

# --- docker-compose -------------------------------------------------------------------

# The Compose Specification's service attributes this file may use; a typo fails here.
COMPOSE_SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "ports", "depends_on",
    "healthcheck", "read_only", "tmpfs", "cap_drop", "security_opt", "stop_grace_period",
    "restart", "volumes", "user",
}


def test_compose_file_is_consistent() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"fetcher", "redis", "cassandra", "dynamodb"} <= services.keys()
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local:")
    for name, service in services.items():
        unknown = set(service) - COMPOSE_SERVICE_KEYS
        assert not unknown, f"deploy/docker-compose.yml: {name}: unknown keys {unknown}"
        assert ":" in service["image"], f"{name}: pin an image tag"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: publish {port} on 127.0.0.1 only"
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]) == DOCKERFILE
        for dep, condition in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dep] or "build" in services[dep], dep
            assert condition["condition"] in (
                "service_started", "service_healthy", "service_completed_successfully"
            )
    fetcher = services["fetcher"]
    # Compose interpolation, defaults only: ${NAME:-default} -> default.
    env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in fetcher["environment"].items()}
    settings = load_settings(IMAGE_SETTINGS, env=env)
    hosts = {s.url.split("//")[1].split(":")[0] for s in settings.stores.values()}
    assert hosts <= services.keys(), "a store URL names a host that is not a compose service"
    grace = int(fetcher["stop_grace_period"].removesuffix("s"))
    assert grace > settings.server.drain_delay_s + settings.server.shutdown_grace_s
    published = {p.rsplit(":", 1)[1] for p in fetcher["ports"]}
    assert published == {"50051", "9100"}
