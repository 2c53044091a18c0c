"""Where the integration tests find their real services.

For each service, in this order:

1. the endpoint in its ``CDC_TEST_*`` environment variable (what ``scripts/test`` and
   ``eval "$(scripts/services env)"`` set up);
2. a testcontainers container, when a Docker daemon answers (``CDC_TEST_DOCKER=0`` turns
   this off);
3. ``scripts/services up NAME``, then the values that ``scripts/services env`` prints.

A missing service is never a reason to skip: :class:`ServiceUnavailable` says which service
and how to start it, and the fixtures turn it into a test failure.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = REPO_ROOT / "scripts" / "services"
DOCKER_CASSANDRA_YAML = REPO_ROOT / "scripts" / "docker" / "cassandra.yaml"

ENV_VARS = {
    "cassandra": "CDC_TEST_CASSANDRA_HOSTS",
    "postgres": "CDC_TEST_POSTGRES_DSN",
    "clickhouse": "CDC_TEST_CLICKHOUSE_URL",
    "timescaledb": "CDC_TEST_TIMESCALEDB_DSN",
}
CDC_RAW_VAR = "CDC_TEST_CASSANDRA_CDC_RAW_DIR"
DEFAULT_PORTS = {"cassandra": 9042, "postgres": 5432, "clickhouse": 8123, "timescaledb": 5432}

# Images for the Docker route; the same as docker-compose.yml.
IMAGES = {
    "cassandra": "cassandra:5.0",
    "postgres": "postgres:15",
    "clickhouse": "clickhouse/clickhouse-server:24.8",
    "timescaledb": "timescale/timescaledb:latest-pg16",
}


class ServiceUnavailable(Exception):
    """A service the tests need cannot be reached or started."""

    def __init__(self, service: str, reason: str):
        super().__init__(
            f"{service} is not available: {reason}\n"
            f"Start it with `scripts/services up {service}` "
            f'(then `eval "$(scripts/services env)"`), '
            f"or point {ENV_VARS[service]} at a running one."
        )
        self.service = service


@dataclass(frozen=True)
class CassandraEndpoint:
    host: str
    port: int
    cdc_raw_dir: Path | None  # None when Cassandra runs where this machine cannot see its files

    @property
    def contact_point(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Resolved:
    """A service's CDC_TEST_* values, and how to release what was started for the session."""

    values: dict[str, str]
    close: Callable[[], None] = lambda: None


# --------------------------------------------------------------------------- resolution


def resolve(service: str) -> Resolved:
    var = ENV_VARS[service]
    if os.environ.get(var):
        values = {k: v for k, v in os.environ.items() if k.startswith("CDC_TEST_")}
        _check_reachable(service, values[var])
        return Resolved(values)
    if docker_available():
        return _DOCKER_STARTERS[service]()
    return _start_with_script(service)


def _start_with_script(service: str) -> Resolved:
    """`scripts/services up SERVICE`, then read its exports from `scripts/services env`."""
    up = subprocess.run(
        [sys.executable, str(SERVICES_SCRIPT), "up", service],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    if up.returncode != 0:
        tail = "\n".join((up.stdout + up.stderr).splitlines()[-25:])
        raise ServiceUnavailable(service, f"`scripts/services up {service}` failed:\n{tail}")
    env = subprocess.run(
        [sys.executable, str(SERVICES_SCRIPT), "env", service],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    values = parse_exports(env.stdout)
    if ENV_VARS[service] not in values:
        raise ServiceUnavailable(
            service, f"`scripts/services env` did not print {ENV_VARS[service]}"
        )
    # Left running on purpose: the next test run reuses it (`scripts/services down` stops it).
    return Resolved(values)


def _check_reachable(service: str, endpoint: str) -> None:
    """Fail early, and clearly, when the configured endpoint has nothing listening."""
    if "://" in endpoint:
        parsed = urllib.parse.urlsplit(endpoint)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or DEFAULT_PORTS[service]
    else:
        first = endpoint.split(",")[0].strip()
        host, _, port_text = first.rpartition(":") if ":" in first else (first, "", "")
        port = int(port_text) if port_text else DEFAULT_PORTS[service]
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise ServiceUnavailable(
            service, f"{ENV_VARS[service]}={endpoint} but nothing answers at {host}:{port} ({e})"
        ) from e


def parse_exports(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def cassandra_endpoint(values: dict[str, str]) -> CassandraEndpoint:
    first = values[ENV_VARS["cassandra"]].split(",")[0].strip()
    host, _, port = first.rpartition(":") if ":" in first else (first, "", "9042")
    raw = values.get(CDC_RAW_VAR)
    return CassandraEndpoint(host=host, port=int(port), cdc_raw_dir=Path(raw) if raw else None)


# --------------------------------------------------------------------------- readiness probes


@cache
def services_script() -> ModuleType:
    """scripts/services as a module: its tiny stdlib CQL/Postgres clients serve as probes."""
    loader = importlib.machinery.SourceFileLoader("cdc_services_script", str(SERVICES_SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def wait_until(service: str, probe: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except Exception as e:  # any failure means "not yet"
            last = e
            time.sleep(1)
    raise ServiceUnavailable(service, f"no answer within {timeout:.0f}s (last error: {last})")


# --------------------------------------------------------------------------- Docker route


@cache
def docker_available() -> bool:
    if os.environ.get("CDC_TEST_DOCKER", "").lower() in ("0", "false", "no"):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def _container(image: str):
    from testcontainers.core.container import DockerContainer

    return DockerContainer(image)


def _remote_probe_host(container) -> str:
    host = container.get_container_host_ip()
    return "127.0.0.1" if host in ("localhost", "::1") else host


def _docker_cassandra() -> Resolved:
    # Commit log and cdc_raw share one bind-mounted host directory: Cassandra hard-links
    # segments into cdc_raw (one filesystem needed) and the tests read cdc_raw from here.
    cdc_dir = Path(tempfile.mkdtemp(prefix="cdc-cassandra-"))
    cdc_dir.chmod(0o777)  # the image runs Cassandra as its own user
    container = (
        _container(IMAGES["cassandra"])
        .with_exposed_ports(9042)
        .with_env("MAX_HEAP_SIZE", "1G")
        .with_env("HEAP_NEWSIZE", "256M")
        # The entrypoint rewrites /etc/cassandra/cassandra.yaml in place, so ours is mounted
        # elsewhere and chosen with -Dcassandra.config.
        .with_env("JVM_EXTRA_OPTS", "-Dcassandra.config=file:///etc/cassandra-cdc/cassandra.yaml")
        .with_volume_mapping(str(DOCKER_CASSANDRA_YAML), "/etc/cassandra-cdc/cassandra.yaml", "ro")
        .with_volume_mapping(str(cdc_dir), "/var/lib/cassandra/cdc", "rw")
    )
    container.start()
    host, port = _remote_probe_host(container), int(container.get_exposed_port(9042))
    script = services_script()

    def probe() -> None:
        script.HOST = host  # the script's client talks to HOST; the mapped port is ours
        script.cql_query(port, "SELECT release_version FROM system.local", timeout=5)
        for ks in ("ecommerce", "test_keyspace"):
            script.cql_query(
                port,
                f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}",
            )

    _wait_or_stop("cassandra", container, probe, 240)
    return Resolved(
        {
            ENV_VARS["cassandra"]: f"{host}:{port}",
            CDC_RAW_VAR: str(cdc_dir / "cdc_raw"),
            "CDC_TEST_CASSANDRA_COMMITLOG_DIR": str(cdc_dir / "commitlog"),
            "CDC_TEST_CASSANDRA_COMPAT_MODE": "CASSANDRA_4",
        },
        close=container.stop,
    )


def _docker_postgres_like(service: str) -> Resolved:
    database = "cdc" if service == "postgres" else "postgres"
    container = (
        _container(IMAGES[service])
        .with_exposed_ports(5432)
        .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_env("POSTGRES_DB", database)
    )
    container.start()
    host, port = _remote_probe_host(container), int(container.get_exposed_port(5432))
    script = services_script()

    def probe() -> None:
        # The image initialises with TCP off, so the first TCP answer is the final server.
        script.HOST = host
        script.pg_query(port, "SELECT 1", database=database, timeout=5)
        if service == "timescaledb":
            script.pg_query(port, "CREATE EXTENSION IF NOT EXISTS timescaledb", database=database)

    _wait_or_stop(service, container, probe, 120)
    return Resolved(
        {ENV_VARS[service]: f"postgresql://postgres@{host}:{port}/{database}"}, close=container.stop
    )


def _docker_clickhouse() -> Resolved:
    container = (
        _container(IMAGES["clickhouse"])
        .with_exposed_ports(8123)
        # Keep the passwordless "default" user reachable from outside the container.
        .with_env("CLICKHOUSE_SKIP_USER_SETUP", "1")
    )
    container.start()
    url = f"http://{_remote_probe_host(container)}:{container.get_exposed_port(8123)}"

    def probe() -> None:
        import urllib.request

        with urllib.request.urlopen(f"{url}/?query=SELECT%201", timeout=5) as resp:
            assert resp.read().strip() == b"1"

    _wait_or_stop("clickhouse", container, probe, 120)
    return Resolved({ENV_VARS["clickhouse"]: url}, close=container.stop)


def _wait_or_stop(service: str, container, probe: Callable[[], None], timeout: float) -> None:
    try:
        wait_until(service, probe, timeout)
    except ServiceUnavailable:
        with contextlib.suppress(Exception):
            container.stop()
        raise


_DOCKER_STARTERS: dict[str, Callable[[], Resolved]] = {
    "cassandra": _docker_cassandra,
    "postgres": lambda: _docker_postgres_like("postgres"),
    "clickhouse": _docker_clickhouse,
    "timescaledb": lambda: _docker_postgres_like("timescaledb"),
}


# --------------------------------------------------------------------------- naming


def isolated_name(prefix: str, module_name: str, max_len: int = 48) -> str:
    """A fresh, valid identifier per test module (and per run, so parallel runs never clash)."""
    base = "".join(c if c.isalnum() else "_" for c in module_name.rsplit(".", 1)[-1].lower())
    suffix = os.urandom(3).hex()
    return f"{prefix}_{base}"[: max_len - len(suffix) - 1] + f"_{suffix}"
