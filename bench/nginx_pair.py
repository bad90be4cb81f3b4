"""The reference pair: nginx A -> (TLS with a client certificate) -> nginx B -> app.

Debian's nginx, one worker each, started in the foreground (``-g 'daemon off;'``) with
its own prefix and configuration in a private directory, and stopped by its own handle:
never systemd, never the system's configuration. Both hops keep their upstream
connections alive and reuse TLS sessions, as a tuned production pair would, so the
comparison is with nginx at its best. Certificates come from tether's own CA
(``tether certs init`` in the benchmark's HOME): ECDSA P-256 workload certificates,
as tether's sidecars use for their mTLS.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.procs import Proc, child_pid, start, wait_listening
from certs.authority import CA_CERT_FILE, load_issuer
from certs.spiffe import SpiffeId
from certs.workload import issue_workload_identity

TRUST_DOMAIN = "public"
NAMESPACE = "default"
UPSTREAM_KEEPALIVE = 32  # idle upstream connections kept per worker (>= the load's 16)


def find_nginx() -> str | None:
    """The nginx binary, or None (``apt-get install nginx-light`` provides one)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


@dataclass(frozen=True)
class Hop:
    """One nginx: where it listens and what it forwards to."""

    name: str
    listen_port: int
    upstream_port: int
    tls_in: bool  # listen with TLS and demand a client certificate
    tls_out: bool  # connect upstream with TLS, presenting a client certificate


@dataclass(frozen=True)
class CertPaths:
    chain: Path  # leaf then issuer
    key: Path
    roots: Path  # the trust bundle a peer's chain must end at
    peer_name: str  # the DNS SAN of the other side's certificate


def nginx_config(hop: Hop, prefix: Path, certs: CertPaths | None) -> str:
    """The whole nginx.conf for one hop (pure, so it can be read and tested)."""
    listen = f"127.0.0.1:{hop.listen_port}"
    server_tls = ""
    if hop.tls_in:
        assert certs is not None
        listen += " ssl"
        server_tls = f"""
        ssl_certificate {certs.chain};
        ssl_certificate_key {certs.key};
        ssl_client_certificate {certs.roots};
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:TLS:1m;
        ssl_session_tickets on;"""
    client_tls = ""
    if hop.tls_out:
        assert certs is not None
        client_tls = f"""
            proxy_ssl_certificate {certs.chain};
            proxy_ssl_certificate_key {certs.key};
            proxy_ssl_trusted_certificate {certs.roots};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 3;
            proxy_ssl_name {certs.peer_name};
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;"""
    scheme = "https" if hop.tls_out else "http"
    temp = prefix / "temp"
    return f"""# {hop.name}: written by bench/nginx_pair.py for one benchmark run
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    upstream next_hop {{
        server 127.0.0.1:{hop.upstream_port};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen};{server_tls}
        location / {{
            proxy_pass {scheme}://next_hop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";{client_tls}
        }}
    }}
}}
"""


def write_certs(certs_dir: Path, out: Path, name: str, peer: str) -> CertPaths:
    """A workload key and certificate for ``name`` from tether's CA in ``certs_dir``."""
    now = datetime.now(UTC)
    identity = issue_workload_identity(
        load_issuer(certs_dir, now), SpiffeId(TRUST_DOMAIN, NAMESPACE, name), now
    )
    out.mkdir(parents=True, exist_ok=True)
    chain, key = out / f"{name}.crt", out / f"{name}.key"
    chain.write_bytes(identity.certificate_chain_pem)
    key.touch(mode=0o600)
    key.write_bytes(identity.private_key_pem)
    roots = out / CA_CERT_FILE
    roots.write_bytes(identity.trust_bundle_pem)
    return CertPaths(chain, key, roots, SpiffeId(TRUST_DOMAIN, NAMESPACE, peer).peer_name())


def start_hop(
    nginx: str, hop: Hop, root: Path, certs: CertPaths | None, env: dict[str, str], logdir: Path
) -> Proc:
    """Starts one nginx in the foreground; its worker is charged with its master."""
    prefix = root / hop.name
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / sub).mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(nginx_config(hop, prefix, certs))
    argv = [nginx, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log"),
            "-g", "daemon off;"]  # fmt: skip
    return start(hop.name, argv, env, logdir)


def start_pair(
    nginx: str,
    certs_dir: Path,
    root: Path,
    ports: tuple[int, int],
    app_port: int,
    tls: bool,
    env: dict[str, str],
    logdir: Path,
    procs: list[Proc],
) -> tuple[Proc, Proc] | str:
    """nginx B (in front of the app) and nginx A (in front of B). Every process started
    is appended to ``procs`` at once, so the caller stops it even when this fails.
    Returns (A, B) or a problem."""
    a_port, b_port = ports
    # The private directory must be traversable by nginx's unprivileged worker (it
    # creates its temp paths there); keys stay readable by the master only.
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    root.chmod(0o755)
    tls_dir = root / "tls"
    a_certs = write_certs(certs_dir, tls_dir, "nginx-a", "nginx-b") if tls else None
    b_certs = write_certs(certs_dir, tls_dir, "nginx-b", "nginx-a") if tls else None
    hops = (
        (Hop("nginx-b", b_port, app_port, tls_in=tls, tls_out=False), b_certs),
        (Hop("nginx-a", a_port, b_port, tls_in=False, tls_out=tls), a_certs),
    )
    started: list[Proc] = []
    for hop, certs in hops:
        proc = start_hop(nginx, hop, root, certs, env, logdir)
        procs.append(proc)
        started.append(proc)
        problem = wait_listening(hop.listen_port, proc)
        if problem:
            log = (root / hop.name / "error.log").read_text(errors="replace")[-2000:]
            return f"{problem}\n{proc.log_tail()}\n{log}"
        # Charge the worker to the master's name (stop() signals the master: a worker
        # signalled alone would only be replaced).
        worker = child_pid(proc.popen.pid, time.monotonic() + 5.0)
        if worker != proc.popen.pid:
            proc.extra_pids = [worker]
    b, a = started
    return a, b
