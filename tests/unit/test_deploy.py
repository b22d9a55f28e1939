"""Kubernetes manifests, checked offline: kubeconform (strict) against local schemas, and
the cross-references no schema sees (ports, probes, timings, selectors, mounted keys).

kubeconform normally downloads its schemas; here they come from the kubernetes-validate
wheel that scripts/setup.sh unpacks into .tools/pypi (its "-local-strict" schemas, with
their $refs rewritten to relative file references so no URL is ever resolved), and the
ServiceMonitor's from deploy/kubernetes/schemas/ (a hand-written subset).
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from fetcher.config import Settings, load_settings
from fetcher.server._app import LIVENESS_SERVICE, SERVICE_NAME
from tests.unit.deploy_support import IMAGE_SETTINGS, ROOT, SETUP, TOOLS, dockerfile_uid, tool

K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = TOOLS / "pypi" / "kubernetes-validate" / "kubernetes_validate" / "kubernetes-json-schema"
# Oldest supported (preStop `sleep` is on by default from 1.30) and newest in the wheel.
K8S_VERSIONS = ("1.30.0", "1.37.0")
# Stand-ins for the Secret's values: only their shape matters to the settings checks.
SECRET_STANDINS = {"main-url": "redis://:pw@redis:6379/0", "l2-url": "redis://:pw@redis:6379/1"}


def _load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def _resource_files() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


@pytest.fixture(scope="module")
def objs() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object the kustomization applies, by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in _resource_files():
        for doc in _load_yaml_docs(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


@pytest.fixture(scope="module")
def pod(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod spec."""
    spec: dict[str, Any] = objs[("Deployment", "feature-fetcher")]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    """The fetcher container."""
    (only,) = pod["containers"]
    return dict(only)


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = SECRET_STANDINS[var["valueFrom"]["secretKeyRef"]["key"]]
    return env


@pytest.fixture(scope="module")
def pod_settings(
    objs: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any], tmp_path_factory: Any
) -> Settings:
    """The settings the pod's server runs with: the ConfigMap's file plus the pod's env."""
    path = tmp_path_factory.mktemp("settings") / "settings.toml"
    path.write_text(objs[("ConfigMap", "feature-fetcher-settings")]["data"]["settings.toml"])
    return load_settings(path, env=_container_env(container))


# --- kubeconform ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def schema_root(tmp_path_factory: Any) -> Path:
    """kubernetes-validate's strict schemas with every $ref made a relative file path."""
    out: Path = tmp_path_factory.mktemp("k8s-schemas")
    for version in K8S_VERSIONS:
        src = SCHEMAS / f"v{version}-local-strict"
        if not src.is_dir():
            pytest.fail(f"{src} is missing: {SETUP}")
        dst = out / src.name
        dst.mkdir()
        for path in src.glob("*.json"):
            schema = json.loads(path.read_text())
            # An $id of https://kubernetes.io/... would make "/api/_definitions.json"
            # resolve to a URL kubeconform tries to download.
            schema.pop("$id", None)
            text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
            (dst / path.name).write_text(text)
    return out


def _kubeconform(version: str, schema_root: Path, files: list[Path]) -> tuple[int, dict[str, Any]]:
    cmd = [
        str(tool("kubeconform")), "-strict", "-output", "json", "-verbose",
        "-kubernetes-version", version,
        "-schema-location",
        f"{schema_root}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
        "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-schema-location", f"{K8S}/schemas/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        *map(str, files),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, json.loads(done.stdout or '{"resources": []}')


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_for_kubeconform(version: str, schema_root: Path) -> None:
    files = _resource_files()
    code, report = _kubeconform(version, schema_root, files)
    bad = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert code == 0 and not bad, f"kubeconform (Kubernetes {version}): {bad}"
    expected = sum(len(_load_yaml_docs(path)) for path in files)
    assert len(report["resources"]) == expected  # nothing skipped for a missing schema


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("deployment.yaml", lambda d: d["spec"]["template"]["spec"]["containers"][0]
         ["readinessProbe"]["grpc"].update(sevice="x"), "sevice"),
        ("servicemonitor.yaml", lambda d: d["spec"]["endpoints"][0].update(interval="15 s"),
         "interval"),
        ("hpa.yaml", lambda d: d["spec"].update(minReplicas="3"), "minReplicas"),
    ],
)
def test_kubeconform_rejects_a_broken_manifest(
    file: str, edit: Any, message: str, schema_root: Path, tmp_path: Path
) -> None:
    (doc,) = _load_yaml_docs(K8S / file)
    edit(doc)
    broken = tmp_path / file
    broken.write_text(yaml.safe_dump(doc))
    code, report = _kubeconform(K8S_VERSIONS[0], schema_root, [broken])
    assert code != 0
    assert message in report["resources"][0]["msg"]


def test_kustomization_lists_every_manifest() -> None:
    listed = {path.name for path in _resource_files()}
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "deploy/kubernetes/kustomization.yaml: resources != *.yaml"


# --- cross-references -----------------------------------------------------------------


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_probes_use_native_grpc_on_the_grpc_port(
    container: dict[str, Any], pod_settings: Settings
) -> None:
    grpc_port = _ports(container)["grpc"]
    assert grpc_port == int(pod_settings.server.listen.rpartition(":")[2])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    # Liveness and startup never follow the stores: a store outage makes pods unready only.
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert container["startupProbe"]["grpc"]["service"] == LIVENESS_SERVICE


def test_metrics_port_matches_settings_and_scrape_config(
    objs: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any], pod_settings: Settings
) -> None:
    metrics_port = _ports(container)["metrics"]
    assert pod_settings.server.metrics_listen == f"0.0.0.0:{metrics_port}"
    annotations = objs[("Deployment", "feature-fetcher")]["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)


def test_shutdown_timings_fit_the_grace_period(
    pod: dict[str, Any], container: dict[str, Any], pod_settings: Settings
) -> None:
    sleep_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    server = pod_settings.server
    assert sleep_s == server.drain_delay_s, "preStop sleep must equal server.drain_delay_s"
    needed = sleep_s + server.drain_delay_s + server.shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] > needed


def test_selectors_match_the_pods(objs: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = objs[("Deployment", "feature-fetcher")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    for constraint in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert selects(constraint["labelSelector"]["matchLabels"])
    assert selects(objs[("PodDisruptionBudget", "feature-fetcher")]["spec"]["selector"][
        "matchLabels"])
    services = {name: o for (kind, name), o in objs.items() if kind == "Service"}
    assert services["feature-fetcher-headless"]["spec"]["clusterIP"] == "None"
    container_ports = _ports(deployment["spec"]["template"]["spec"]["containers"][0])
    for name, service in services.items():
        assert selects(service["spec"]["selector"]), name
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"{name}: {port['targetPort']}"
            assert port["port"] == container_ports[port["targetPort"]], name
    target = objs[("HorizontalPodAutoscaler", "feature-fetcher")]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_service_monitor_scrapes_the_metrics_port_once(
    objs: dict[tuple[str, str], dict[str, Any]],
) -> None:
    monitor = objs[("ServiceMonitor", "feature-fetcher")]["spec"]
    selector = monitor["selector"]["matchLabels"]
    matched = [
        o for (kind, _), o in objs.items()
        if kind == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]
    assert len(matched) == 1, "the ServiceMonitor must select exactly one Service"
    port_names = {p["name"] for p in matched[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} == {"metrics"} <= port_names


def test_mounted_configmap_keys_exist(
    objs: dict[tuple[str, str], dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes, f"volumeMount {mount['name']} has no volume"
    for volume in volumes.values():
        if "configMap" not in volume:
            continue
        ref = volume["configMap"]
        data = objs[("ConfigMap", ref["name"])]["data"]
        keys = [item["key"] for item in ref["items"]]
        assert set(keys) == set(data), f"volume {volume['name']}: items != {ref['name']} keys"


def test_settings_and_catalog_paths_line_up(
    objs: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any], pod_settings: Settings
) -> None:
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    args = container["args"]
    assert args[args.index("--settings") + 1] == mounts["settings"]
    assert pod_settings.server.config_dir == mounts["catalog"]
    text = objs[("ConfigMap", "feature-fetcher-settings")]["data"]["settings.toml"]
    assert text == IMAGE_SETTINGS.read_text(), "configmap.yaml != deploy/settings.toml"


def test_catalog_configmap_is_config_demo(objs: dict[tuple[str, str], dict[str, Any]]) -> None:
    data = objs[("ConfigMap", "feature-fetcher-catalog")]["data"]
    demo = ROOT / "config" / "demo"
    files = {p.relative_to(demo).as_posix(): p for p in demo.rglob("*") if p.is_file()}
    assert set(data) == {rel.replace("/", ".") for rel in files}
    for rel, path in files.items():
        key = rel.replace("/", ".")
        assert data[key] == path.read_text(), f"catalog-configmap.yaml {key} != config/demo/{rel}"


def test_no_secret_in_a_configmap(
    objs: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any]
) -> None:
    settings = tomllib.loads(objs[("ConfigMap", "feature-fetcher-settings")]["data"][
        "settings.toml"])
    assert all("url" not in store for store in settings.get("stores", {}).values())
    assert "l2_url" not in settings.get("cache", {})
    for var in container["env"]:
        if var["name"].endswith("_URL"):
            assert "secretKeyRef" in var["valueFrom"], f"{var['name']} must come from a Secret"



def test_pod_is_restricted(pod: dict[str, Any], container: dict[str, Any]) -> None:
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == dockerfile_uid() != 0
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    own = container["securityContext"]
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
