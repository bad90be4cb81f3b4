"""A mesh across "machines": tether sidecars and echo apps inside network namespaces.

Each ``Node`` is one machine (a namespace from ``netns``) running, as a user would:
- the echo app on the machine's loopback (``APP_PORT``), logging what it receives to a
  file on the shared filesystem, so the test counts calls per instance;
- a ``tether sidecar`` with the same ports on every machine (namespaces do not share
  ports), its internal gRPC port bound to the machine's 198.18 address through
  ``DAPR_HOST_IP``, mTLS with one shared CA made by ``tether certs init``;
- an ``Agent``: a small Python process that makes HTTP calls from inside the machine,
  since the test process (in the host's namespace) cannot reach a machine's loopback.

Every process has its own handle and is stopped by ``Mesh.close`` (the network's close
stops anything left). The ``tether`` subprocesses import ``proxy`` the way the test
process's environment says (``PYTHONPATH``), so a test run picks which code it tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import netns
from tests.e2e.dnsmasq import Dnsmasq, Srv
from tests.e2e.harness import APPS, READY_TIMEOUT, App, Sidecar, tether_command, wait_until
from tests.e2e.mesh_agent import Agent, Result
from tests.e2e.netns import Machine, Network

# The same on every machine, as in a cluster (50002 is the injector's internal port).
APP_PORT = 3000
HTTP_PORT = 3500
INTERNAL_PORT = 50002
METRICS_PORT = 9090
DNS_PORT = 53
DOMAIN = "mesh.test"
NAME_TEMPLATE = "{appid}.{namespace}.svc." + DOMAIN


@dataclass
class Node:
    """One machine running one app instance and its sidecar (or a sidecar alone)."""

    machine: Machine
    app_id: str
    namespace: str
    sidecar: Sidecar
    agent: Agent
    app: App | None = None

    @property
    def address(self) -> str:
        return self.machine.address

    def invoke(self, target: str, method: str = "hello", **kwargs: Any) -> list[Result]:
        """Calls to ``target`` (``id`` or ``id.namespace``) through this node's sidecar."""
        return self.agent.calls(HTTP_PORT, f"/v1.0/invoke/{target}/method/{method}", **kwargs)

    def received(self) -> int:
        """How many requests this node's app has received so far."""
        return len(self.app.received()) if self.app is not None else 0

    def metrics(self) -> str:
        results = self.agent.calls(METRICS_PORT, "/metrics", timeout=5.0)
        assert results[0].status == 200, results[0]
        return results[0].body

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def kill(self) -> None:
        """SIGKILL the sidecar and its app: a crashed instance, no goodbye."""
        for process in (self.sidecar.process, self.app.process if self.app else None):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)


@dataclass
class Mesh:
    """Nodes on one ``Network``, all under ``root`` (shared HOME, certs, logs)."""

    network: Network
    root: Path
    mtls: bool = True
    nodes: list[Node] = field(default_factory=list)
    servers: list[Dnsmasq] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.root / "home"
        self.home.mkdir(exist_ok=True)
        self.env = {**os.environ, "HOME": str(self.home)}
        for name in ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_HOST_IP"):
            self.env.pop(name, None)
        self.certs_dir = self.root / "certs"
        if self.mtls:
            made = subprocess.run(
                [*tether_command(), "certs", "init", "--dir", str(self.certs_dir)],
                env=self.env,
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert made.returncode == 0, made.stderr

    def machine(self, name: str) -> Machine:
        return self.network.machines.get(name) or self.network.machine(name)

    def config(self, name: str, spec: Mapping[str, object]) -> Path:
        """A Configuration file with ``spec`` (JSON is YAML, so no YAML writer needed)."""
        path = self.root / f"{name}.yaml"
        document = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path

    def node(
        self,
        name: str,
        app_id: str,
        *,
        app: bool = True,
        config: Path | None = None,
        namespace: str = "default",
        internal_port: int = INTERNAL_PORT,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> Node:
        """Start (on a new machine ``name``) the echo app, if wanted, and a sidecar."""
        machine = self.machine(name)
        agent = Agent(machine)
        started_app = self._app(machine, agent) if app else None
        args = [
            *tether_command(),
            "sidecar",
            "--app-id", app_id,
            "--dapr-http-port", str(HTTP_PORT),
            "--dapr-internal-grpc-port", str(internal_port),
            "--metrics-port", str(METRICS_PORT),
            "--metrics-listen-address", "127.0.0.1",
            f"--enable-mtls={'true' if self.mtls else 'false'}",
        ]  # fmt: skip
        if self.mtls:
            args += ["--certs-dir", str(self.certs_dir)]
        if started_app is not None:
            args += ["--app-port", str(APP_PORT)]
        if config is not None:
            args += ["--config", str(config)]
        args += list(extra)
        sidecar_env = {
            **self.env,
            "DAPR_HOST_IP": machine.address,
            "NAMESPACE": namespace,
            **(env or {}),
        }
        log_path = self.root / f"sidecar-{name}.log"
        with open(log_path, "ab") as log:
            # cwd: not a checkout, so `python -m proxy` imports what PYTHONPATH says.
            process = machine.popen(
                args, env=sidecar_env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        sidecar = Sidecar(app_id, HTTP_PORT, process, log_path)
        node = Node(machine, app_id, namespace, sidecar, agent, started_app)
        self.nodes.append(node)
        if wait:
            self.wait_ready(node)
        return node

    def _app(self, machine: Machine, agent: Agent) -> App:
        log_path = self.root / f"app-{machine.name}.jsonl"
        process = machine.popen(
            [sys.executable, str(APPS / "echo_app.py"), str(APP_PORT), str(log_path)]
        )
        wait_until(
            lambda: process.poll() is None and agent.connects(APP_PORT),
            f"the echo app on {machine.name} listens",
        )
        return App(APP_PORT, log_path, process)

    def wait_ready(self, node: Node) -> None:
        def ready() -> bool:
            if node.sidecar.process.poll() is not None:
                raise RuntimeError(
                    f"sidecar on {node.machine.name} exited early:\n{node.sidecar.log()}"
                )
            result = node.agent.calls(HTTP_PORT, "/v1.0/healthz", timeout=2.0)[0]
            return result.status == 204

        try:
            wait_until(ready, f"sidecar on {node.machine.name} is ready", READY_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{node.sidecar.log()}") from exc

    def dns(
        self,
        name: str = "dns",
        *,
        hosts: Mapping[str, Sequence[str]] | None = None,
        srv: Sequence[Srv] = (),
        ttl: int = 5,
        zones: Sequence[str] = (DOMAIN,),
    ) -> Dnsmasq:
        """Start dnsmasq on its own machine, port 53 on its 198.18 address (so a
        resolv.conf can name it); stopped by ``close``."""
        machine = self.machine(name)
        server = Dnsmasq(
            self.root / f"dnsmasq-{name}",
            listen=machine.address,
            port=DNS_PORT,
            ttl=ttl,
            zones=zones,
            hosts=hosts,
            srv=srv,
            launcher=machine.launcher,
        )
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        """Stop every sidecar, app, agent and DNS server this mesh started."""
        for server in self.servers:
            server.stop()
        for node in reversed(self.nodes):
            processes = [node.sidecar.process, node.agent.process]
            if node.app is not None:
                processes.append(node.app.process)
            for process in processes:
                _stop(process)

    def __enter__(self) -> Mesh:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def dns_name(app_id: str, namespace: str = "default") -> str:
    """The name the ``dns`` resolver looks up (``NAME_TEMPLATE``)."""
    return NAME_TEMPLATE.format(appid=app_id, namespace=namespace)


def resolution_config(mesh: Mesh, resolver: str, server: Dnsmasq | None = None) -> Path:
    """A Configuration selecting ``resolver``: ``sqlite`` with one registry file shared
    by every machine, ``dns`` asking ``server`` for ``NAME_TEMPLATE``, or ``mdns``
    (multicast on the machines' bridge)."""
    if resolver == "sqlite":
        configuration: dict[str, object] = {
            "connectionString": str(mesh.root / "registry.db"),
            "updateInterval": "1s",
        }
    elif resolver == "dns":
        assert server is not None, "the dns resolver needs a server"
        configuration = {"name": NAME_TEMPLATE, "nameservers": [server.nameserver]}
    elif resolver == "mdns":
        return mesh.config(resolver, {"nameResolution": {"component": "mdns"}})
    else:
        raise ValueError(f"unknown resolver {resolver!r}")
    spec = {"nameResolution": {"component": resolver, "configuration": configuration}}
    return mesh.config(resolver, spec)


@dataclass
class Deployment:
    """A caller ("checkout", no app) and the instances of one app it calls."""

    caller: Node
    instances: list[Node]
    config: Path
    server: Dnsmasq | None = None  # the DNS server, for ``dns``


def deploy(
    mesh: Mesh, resolver: str, instances: int, *, app_id: str = "orders", ttl: int = 5
) -> Deployment:
    """``instances`` machines running ``app_id`` and one caller, found via ``resolver``;
    with ``dns``, a dnsmasq (records with ``ttl``) lists every instance."""
    server = mesh.dns(ttl=ttl) if resolver == "dns" else None
    config = resolution_config(mesh, resolver, server)
    nodes = [mesh.node(f"{app_id}{i}", app_id, config=config) for i in range(1, instances + 1)]
    if server is not None:
        server.set_hosts({dns_name(app_id): [node.address for node in nodes]})
    caller = mesh.node("checkout", "checkout", app=False, config=config)
    return Deployment(caller, nodes, config, server)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def mesh_fixture(root: Path, *, mtls: bool = True) -> Iterator[Mesh]:
    """Body of a pytest fixture: ``yield from mesh_fixture(tmp_path)`` (skips where
    namespaces are unavailable). The mesh is closed before its network."""
    netns.require_netns()
    netns.sweep_stale()
    with Network() as network, Mesh(network, root, mtls=mtls) as mesh:
        yield mesh


def shares(nodes: Sequence[Node], before: Mapping[str, int] | None = None) -> dict[str, int]:
    """Requests each node's app received (since ``before``), by machine name."""
    counts = Counter({node.machine.name: node.received() for node in nodes})
    if before:
        counts.subtract(before)
    return dict(counts)


def queries(server: Dnsmasq, name: str) -> Counter[str]:
    """How many queries (by type: A, AAAA, SRV...) dnsmasq has logged for ``name``,
    the SRV name ``_dapr-internal._tcp.<name>`` included (as "SRV")."""
    counts: Counter[str] = Counter()
    for line in server.log().splitlines():
        _, found, rest = line.partition(": query[")
        if not found:
            continue
        kind, _, tail = rest.partition("] ")
        queried = tail.split(" ", 1)[0]
        if queried in (name, f"_dapr-internal._tcp.{name}"):
            counts[kind] += 1
    return counts
