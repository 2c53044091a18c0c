"""The cassandra-driver session to the node whose ``cdc_raw`` is read, opened lazily.

The commit log belongs to one node, and so does the schema it was written under: every
request goes to the first of ``hosts`` while it answers. When it is down (a node restart,
a crash) the schema is read from the others, in the order given, so the agent keeps its
catalog current and reports its own node down instead of failing. The calls here block;
the adapters run them in a worker thread. Driver errors become the domain's
:class:`~cdc_domain.errors.TransientError` here, so none leaks through a port.

Snapshots read through a session of their own (:meth:`CassandraConnection.raw_session`),
whose rows stay bytes for this package's decoders, at the consistency level they ask
for; the ring and the node's size estimates come from the same cluster connection.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cdc_adapters.cassandra.schema_reader import read_table_schemas
from cdc_domain.errors import SourceError, TransientError
from cdc_domain.schema import TableSchema

__all__ = ["MAX_TOKEN", "MIN_TOKEN", "CassandraConnection", "parse_host"]

T = TypeVar("T")
_DEFAULT_PORT = 9042
MIN_TOKEN = -(2**63)
"""Murmur3Partitioner's minimum token, which no key has: ``token(pk) > MIN_TOKEN`` is
every key."""
MAX_TOKEN = 2**63 - 1
RECONNECT_MAX_S = 10.0
"""The longest pause between attempts to reach a node that went down. The driver's
default grows to ten minutes: an agent whose node was down for a minute would go on
reading the schema elsewhere, and report its node down, minutes after it came back."""


def parse_host(host: str) -> tuple[str, int]:
    """``host[:port]`` (IPv6 as ``[addr]:port``) as (address, port)."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        return address, int(rest.lstrip(":") or _DEFAULT_PORT)
    if host.count(":") == 1:
        address, _, port = host.partition(":")
        return address, int(port)
    return host, _DEFAULT_PORT


class CassandraConnection:
    """One cluster connection, made on first use and shared by the callers in a process."""

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        if not hosts:
            raise ValueError("at least one Cassandra host is needed")
        self._address, self._port = parse_host(hosts[0])
        self._contact_points = [parse_host(h)[0] for h in hosts]
        self._username = username
        self._password = password
        self._timeout = request_timeout
        self._cluster: Any = None
        self._session: Any = None
        self._raw: Any = None
        self._profiles: set[str] = set()
        self._lock = threading.Lock()

    @property
    def node(self) -> str:
        return f"{self._address}:{self._port}"

    def _connect(self) -> Any:
        self._cluster = self._new_cluster()
        return self._cluster.connect()

    def _new_cluster(self) -> Any:
        """The driver's ``Cluster`` for these hosts, not connected yet."""
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import ExponentialReconnectionPolicy

        profile = ExecutionProfile(
            load_balancing_policy=_own_node_first(self._address, self._contact_points),
            request_timeout=self._timeout,
        )
        auth = (
            PlainTextAuthProvider(self._username, self._password or "") if self._username else None
        )
        return Cluster(
            self._contact_points,
            port=self._port,
            auth_provider=auth,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            protocol_version=5,  # Cassandra 4.0+; spares the driver's downgrade dance
            reconnection_policy=ExponentialReconnectionPolicy(1.0, RECONNECT_MAX_S),
        )

    def session(self) -> Any:
        """The connected ``cassandra.cluster.Session`` (blocking on first use)."""
        with self._lock:
            if self._session is None:
                self._session = self._call(self._connect)
            return self._session

    def _call(self, work: Callable[[], T]) -> T:
        from cassandra import DriverException, OperationTimedOut, RequestExecutionException
        from cassandra.cluster import NoHostAvailable

        try:
            return work()
        except (
            DriverException,
            NoHostAvailable,
            OperationTimedOut,
            RequestExecutionException,
            OSError,
        ) as exc:
            raise TransientError(f"cassandra at {self.node}: {exc}") from exc

    def raw_session(self, consistency: str) -> tuple[Any, str]:
        """A second session whose result rows stay bytes
        (:mod:`~cdc_adapters.cassandra.raw_rows`), and the name of an execution profile
        reading at ``consistency`` (a level's name, ``LOCAL_QUORUM``) from this node."""
        from cassandra import ConsistencyLevel
        from cassandra.cluster import ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy

        from cdc_adapters.cassandra.raw_rows import RawProtocolHandler, raw_rows

        self.session()
        name = f"snapshot-{consistency.lower()}"
        with self._lock:
            if name not in self._profiles:
                profile = ExecutionProfile(
                    load_balancing_policy=WhiteListRoundRobinPolicy([self._address]),
                    request_timeout=self._timeout,
                    consistency_level=ConsistencyLevel.name_to_value[consistency],
                    row_factory=raw_rows,
                )
                self._call(lambda: self._cluster.add_execution_profile(name, profile))
                self._profiles.add(name)
            if self._raw is None:
                self._raw = self._call(self._cluster.connect)
                self._raw.client_protocol_handler = RawProtocolHandler
            return self._raw, name

    def ring(self, keyspace: str) -> list[tuple[int, int, bool]]:
        """``(start, end, mine)`` for each range of the ring, covering every token once
        (the range wrapping around the ring's end split in two); ``mine`` when this
        node is the range's primary replica for ``keyspace``. Murmur3Partitioner only."""
        self.session()
        metadata = self._cluster.metadata
        if not str(metadata.partitioner).endswith("Murmur3Partitioner"):
            raise SourceError(
                f"snapshots read Murmur3Partitioner token ranges; this cluster uses "
                f"{metadata.partitioner}"
            )
        token_map = metadata.token_map
        if token_map is None or not token_map.ring:
            raise TransientError(f"cassandra at {self.node}: the token ring is not known yet")
        ring = list(token_map.ring)

        def mine(token: Any) -> bool:
            replicas = token_map.get_replicas(keyspace, token) or [
                token_map.token_to_host_owner[token]
            ]
            endpoint = replicas[0].endpoint
            return (endpoint.address, endpoint.port) == (self._address, self._port)

        first = mine(ring[0])
        ranges = [(MIN_TOKEN, ring[0].value, first)] if ring[0].value > MIN_TOKEN else []
        for before, token in itertools.pairwise(ring):
            ranges.append((before.value, token.value, mine(token)))
        if ring[-1].value < MAX_TOKEN:
            ranges.append((ring[-1].value, MAX_TOKEN, first))
        return ranges

    def size_estimate(self, keyspace: str, table: str) -> int | None:
        """Partitions of the table in this node's primary ranges, as the node last
        estimated them (``system.size_estimates``, refreshed every few minutes); None
        before the first estimate."""
        session = self.session()
        query = (
            "SELECT partitions_count FROM system.size_estimates "
            "WHERE keyspace_name = %s AND table_name = %s"
        )
        rows = self._call(lambda: list(session.execute(query, (keyspace, table))))
        return sum(int(row[0]) for row in rows) if rows else None

    def load_schemas(self, keyspaces: Sequence[str] | None = None) -> list[TableSchema]:
        """Every table's schema from ``system_schema`` (of ``keyspaces``, default all)."""
        session = self.session()
        return self._call(lambda: read_table_schemas(session, keyspaces))

    def schema_version(self) -> uuid.UUID:
        """The node's schema version: it changes with every DDL the node has applied."""
        session = self.session()
        row = self._call(lambda: session.execute("SELECT schema_version FROM system.local").one())
        return uuid.UUID(str(row[0]))

    def release_version(self) -> str:
        """The agent's own node's Cassandra version, asked of that node alone: the
        cheapest query that proves it answers (the others answering does not)."""
        session = self.session()

        def ask() -> Any:
            host = self._cluster.metadata.get_host(self._address, self._port)
            if host is None or not host.is_up:
                raise TransientError(f"cassandra at {self.node}: the node is down")
            return session.execute("SELECT release_version FROM system.local", host=host).one()

        return str(self._call(ask)[0])

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = self._session = self._raw = None
            self._profiles.clear()


def _own_node_first(address: str, contact_points: Sequence[str]) -> Any:
    """A load balancing policy that sends every request to ``address`` while it is up,
    then to the other nodes in the order of ``contact_points``, then to any other."""
    from cassandra.policies import HostDistance, LoadBalancingPolicy

    order = {point: rank for rank, point in enumerate(contact_points)}

    class OwnNodeFirst(LoadBalancingPolicy):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._hosts: set[Any] = set()

        def populate(self, cluster: Any, hosts: Any) -> None:
            self._hosts = set(hosts)

        def distance(self, host: Any) -> Any:
            return HostDistance.LOCAL

        def make_query_plan(self, working_keyspace: Any = None, query: Any = None) -> Any:
            ranked = sorted(
                (h for h in self._hosts if h.is_up is not False),
                key=lambda h: (h.address != address, order.get(h.address, len(order))),
            )
            return iter(ranked)

        def on_up(self, host: Any) -> None:
            self._hosts.add(host)

        def on_down(self, host: Any) -> None:
            """Down hosts stay known: the plan skips them until they are up again."""

        def on_add(self, host: Any) -> None:
            self._hosts.add(host)

        def on_remove(self, host: Any) -> None:
            self._hosts.discard(host)

    return OwnNodeFirst()
