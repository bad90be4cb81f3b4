"""deploy/kubernetes/ and deploy/container/Dockerfile, checked without a cluster.

Every manifest is validated against Kubernetes' own OpenAPI schemas (offline, strict: an
unknown field fails), and against tether itself: the sidecar's flags go through tether's
CLI with the pod's volumes laid out as the kubelet would, the ConfigMaps load with tether's
loaders, and the Services, ports, probes and mounts agree with the flags. What no schema
can say (a selector matching its pods, a probe asking the port the API listens on) is
checked here too. Nothing here runs a pod.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from certs.authority import create_authority, load_issuer, write_authority
from proxy.cli import build_parser, settings_from_args
from proxy.config.configuration import ConfigError, load_configuration
from proxy.config.resiliency_reload import ResiliencyFiles, fingerprint
from proxy.core.errors import UsageError
from resiliency import load_resiliency

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
# Native sidecars (restartable init containers) are on by default from Kubernetes 1.29.
OLDEST_KUBERNETES = "1.29"
VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
# The downward API's values in a pod: metadata.namespace and status.podIP.
POD_ENV = {"NAMESPACE": "shop", "DAPR_HOST_IP": "10.244.1.7"}
# Until the kubernetes resolver merges, tether refuses it with exactly these messages.
NOT_MERGED_YET = (
    "--mode: 'kubernetes' is not supported yet",
    'spec.nameResolution.component: "kubernetes" is not supported yet',
)

Doc = dict[str, Any]


def _documents() -> list[tuple[str, Doc]]:
    found = []
    for file in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(file.read_text()):
            if document:
                found.append((file.name, document))
    return found


def manifest_objects(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == kind}


def _deployments() -> list[Doc]:
    return list(manifest_objects("Deployment").values())


def _sidecar(deployment: Doc) -> Doc:
    spec = deployment["spec"]["template"]["spec"]
    (tether,) = [c for c in spec.get("initContainers", []) if c["name"] == "tether"]
    return tether  # type: ignore[no-any-return]


def _flags(container: Doc) -> dict[str, str]:
    """``--name=value`` args as a map (the manifests always use that form)."""
    assert container["args"][0] == "sidecar"
    flags = {}
    for arg in container["args"][1:]:
        assert re.fullmatch(r"--[a-z-]+=\S+", arg), f"{arg!r}: write flags as --name=value"
        name, _, value = arg.partition("=")
        flags[name] = value
    return flags


def _skip_until_merged(error: Exception) -> None:
    if any(text in str(error) for text in NOT_MERGED_YET):
        pytest.skip(f"the kubernetes resolver is not merged yet: {error}")


def _configmap_file(name: str, key: str, folder: Path) -> Path:
    path = folder / key
    path.write_text(manifest_objects("ConfigMap")[name]["data"][key])
    return path


def test_there_are_two_apps_and_the_configmaps() -> None:
    assert sorted(manifest_objects("Deployment")) == ["checkout", "orders"]
    assert sorted(manifest_objects("Service")) == ["checkout-dapr", "orders-dapr"]
    assert sorted(manifest_objects("ConfigMap")) == ["tether-config", "tether-resiliency"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_the_kubernetes_schemas(version: str) -> None:
    failures = []
    for file, document in _documents():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            failures.append(f"{file}: {document['kind']}: {where}: {error.message}")
    assert failures == []


def _misspell(document: Doc, path: str, wrong: str) -> Doc:
    """A copy with the field at the dotted ``path`` renamed to ``wrong``."""
    broken = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = broken
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[wrong] = node.pop(last)
    return broken


@pytest.mark.parametrize(
    ("kind", "path", "wrong"),
    [
        ("Service", "spec.clusterIP", "clusterIp"),
        ("Deployment", "spec.template.spec.initContainers.0.restartPolicy", "restartpolicy"),
        (
            "Deployment",
            "spec.template.spec.initContainers.0.securityContext.readOnlyRootFilesystem",
            "readOnlyRootFileSystem",
        ),
    ],
)
def test_a_misspelled_field_fails_validation(kind: str, path: str, wrong: str) -> None:
    original = manifest_objects(kind)["orders" if kind == "Deployment" else "orders-dapr"]
    kubernetes_validate.validate(original, OLDEST_KUBERNETES, strict=True)
    broken = _misspell(original, path, wrong)
    with pytest.raises(kubernetes_validate.ValidationError, match=wrong):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_each_app_has_its_headless_dapr_service(deployment: Doc) -> None:
    flags = _flags(_sidecar(deployment))
    service = manifest_objects("Service")[f"{flags['--app-id']}-dapr"]
    assert service["spec"]["clusterIP"] == "None"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    internal = int(flags["--dapr-internal-grpc-port"])
    metrics = int(flags["--metrics-port"])
    assert ports == {"dapr-internal": (internal, internal), "dapr-metrics": (metrics, metrics)}
    served = {p["name"]: p["containerPort"] for p in _sidecar(deployment)["ports"]}
    assert served == {"dapr-internal": internal, "dapr-metrics": metrics}
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(metrics)


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_the_sidecar_is_native_and_wired_to_the_pod(deployment: Doc) -> None:
    pod = deployment["spec"]["template"]["spec"]
    tether = _sidecar(deployment)
    flags = _flags(tether)
    assert tether["restartPolicy"] == "Always"
    assert flags["--mode"] == "kubernetes"
    assert flags["--dapr-internal-grpc-port"] == "50002"  # the same in every pod: Dapr's rule
    assert flags["--dapr-listen-addresses"] == "127.0.0.1"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in tether["env"]}
    assert env == {"NAMESPACE": "metadata.namespace", "DAPR_HOST_IP": "status.podIP"}
    mounts = {m["mountPath"]: m["name"] for m in tether["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert Path(flags["--config"]).parent.as_posix() in mounts
    assert flags["--resources-path"] in mounts
    assert flags["--certs-dir"] in mounts
    for name in mounts.values():
        source = volumes[name].get("configMap") or volumes[name]["secret"]
        if "name" in source:
            assert source["name"] in manifest_objects("ConfigMap"), f"{name}: no such ConfigMap"
    assert volumes[mounts[flags["--certs-dir"]]]["secret"]["secretName"] == "tether-certs"
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in [*pod["initContainers"], *pod["containers"]]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]
        app_env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if container is not tether:
            assert app_env["DAPR_HTTP_PORT"] == flags["--dapr-http-port"]
            if "--app-port" in flags:
                assert app_env["APP_PORT"] == flags["--app-port"]


def probe_commands(deployment: Doc) -> dict[str, list[str]]:
    """The exec probes of the tether container: ``{"readinessProbe": argv, ...}``."""
    tether = _sidecar(deployment)
    return {
        kind: tether[kind]["exec"]["command"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_probes_ask_the_port_the_api_listens_on(deployment: Doc) -> None:
    flags = _flags(_sidecar(deployment))
    probes = probe_commands(deployment)
    for command in probes.values():
        assert command[:4] == ["python", "-I", "-S", "-c"]
        assert '"127.0.0.1"' in command[4]
        assert command[5] == flags["--dapr-http-port"]
    # Only readiness follows the app's health: a sick app must not restart its sidecar.
    assert probes["startupProbe"][6] == "/v1.0/healthz/outbound"
    assert probes["livenessProbe"][6] == "/v1.0/healthz/outbound"
    assert probes["readinessProbe"][6] == "/v1.0/healthz"


def test_the_configuration_configmap_loads_with_tethers_loader(tmp_path: Path) -> None:
    path = _configmap_file("tether-config", "config.yaml", tmp_path)
    try:
        settings = load_configuration(path, env={})
    except ConfigError as error:
        _skip_until_merged(error)
        raise
    assert settings.name == "tether"
    assert settings.name_resolution.component == "kubernetes"


def test_the_resiliency_configmap_loads_with_tethers_loader(tmp_path: Path) -> None:
    path = _configmap_file("tether-resiliency", "resiliency.yaml", tmp_path)
    config, report = load_resiliency([tmp_path], app_id="checkout")
    assert report.lines() == ()
    assert config.resource_names == ("checkout-resiliency",)
    assert set(config.apps) == {"orders"}
    assert config.apps["orders"].retry == "orders"
    # Scoped to checkout: the orders sidecar loads nothing from it.
    others, _ = load_resiliency([path], app_id="orders")
    assert dict(others.apps) == {}


def lay_out_volume(folder: Path, files: Mapping[str, bytes], generation: str) -> None:
    """Write files as the kubelet does for a ConfigMap or Secret volume (and on each update):
    the data in a new hidden folder, ``..data`` swapped atomically to it, and one symlink
    per key through ``..data``."""
    folder.mkdir(parents=True, exist_ok=True)
    real = folder / f"..{generation}"
    real.mkdir()
    for key, data in files.items():
        (real / key).write_bytes(data)
    staged = folder / "..data_tmp"
    staged.symlink_to(real.name)
    os.replace(staged, folder / "..data")
    for key in files:
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(Path("..data") / key)


def _volume_files(volume: Doc, tmp_path: Path) -> dict[str, bytes]:
    if "configMap" in volume:
        data = manifest_objects("ConfigMap")[volume["configMap"]["name"]]["data"]
        return {key: text.encode() for key, text in data.items()}
    # The Secret as the README creates it: `kubectl create secret generic tether-certs
    # --from-file=DIR` on the folder `tether certs init --dir DIR` wrote.
    certs = tmp_path / "certs-init"
    write_authority(certs, create_authority("public", datetime.now(UTC)))
    return {file.name: file.read_bytes() for file in certs.iterdir()}


def _pod_args(deployment: Doc, tmp_path: Path) -> list[str]:
    """The sidecar's args with each mounted volume laid out under ``tmp_path``."""
    tether = _sidecar(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    args = list(tether["args"])
    for mount in tether["volumeMounts"]:
        local = tmp_path / "pod" / mount["mountPath"].lstrip("/")
        lay_out_volume(local, _volume_files(volumes[mount["name"]], tmp_path), "2026_01_01")
        args = [
            re.sub(f"^(--[a-z-]+=){re.escape(mount['mountPath'])}(/|$)", rf"\g<1>{local}\2", a)
            for a in args
        ]
    return args


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_tethers_cli_accepts_the_sidecar_args(deployment: Doc, tmp_path: Path) -> None:
    args = build_parser().parse_args(_pod_args(deployment, tmp_path))
    try:
        settings = settings_from_args(args, POD_ENV, mtls_default=False)
    except UsageError as error:
        _skip_until_merged(error)
        raise
    flags = _flags(_sidecar(deployment))
    assert settings.app_id == deployment["metadata"]["name"]
    assert settings.namespace == "shop"
    assert settings.internal_grpc_port == 50002
    assert settings.internal_listen_address == "10.244.1.7"  # the pod IP, from the downward API
    assert settings.listen_addresses == ("127.0.0.1",)
    assert settings.http_port == int(flags["--dapr-http-port"])
    assert settings.enable_mtls is True
    assert settings.metrics_enabled is True
    assert settings.metrics_port == 9090
    # The certificate Secret's files are what the sidecar loads at start.
    assert load_issuer(settings.certs_dir, datetime.now(UTC)).certificate is not None


def test_a_configmap_update_reaches_the_resiliency_reloader(tmp_path: Path) -> None:
    folder = tmp_path / "resources"
    text = manifest_objects("ConfigMap")["tether-resiliency"]["data"]["resiliency.yaml"]
    lay_out_volume(folder, {"resiliency.yaml": text.encode()}, "2026_01_01")
    files = ResiliencyFiles((folder,), "checkout")
    before = fingerprint((folder,))
    assert files.load()[0].retries["orders"].max_retries == 3
    edited = text.replace("maxRetries: 3", "maxRetries: 10")
    lay_out_volume(folder, {"resiliency.yaml": edited.encode()}, "2026_01_02")
    assert fingerprint((folder,)) != before  # the reloader's poll sees the swap
    assert files.load()[0].retries["orders"].max_retries == 10


def _dockerfile_instructions() -> Iterator[list[str]]:
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.split()


def test_the_image_holds_every_package_and_the_demo_apps() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        source.rstrip("/")
        for words in _dockerfile_instructions()
        if words[0] == "COPY"
        for source in words[1:-1]
    }
    assert packages <= copied
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    commands = [
        " ".join(c.get("command", []))
        for d in _deployments()
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    for script in re.findall(r"/opt/tether/examples/(\w+\.py)", " ".join(commands)):
        assert f"examples/{script}" in copied
        assert (ROOT / "examples" / script).is_file()
    instructions = {words[0]: words[1:] for words in _dockerfile_instructions()}
    assert instructions["FROM"] == ["python:3.11-slim"]
    assert instructions["USER"] == ["10001:10001"]
    assert instructions["ENTRYPOINT"] == ['["tether"]']


def test_the_images_carry_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod["initContainers"], *pod["containers"]]:
            assert container["image"] == f"tether:{version}"
    assert f"-t tether:{version} ." in DOCKERFILE.read_text()
