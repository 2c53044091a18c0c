"""CQL types as Cassandra spells them in ``system_schema``, parsed into a small tree.

Decoders and type mappers need more than the string: whether a collection is frozen
decides how its cells are laid out in the commit log, and a UDT's field list decides
how its bytes split. ``CqlType`` keeps exactly that and nothing driver-specific.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import attrs

__all__ = [
    "COLLECTION_TYPES",
    "NATIVE_TYPES",
    "CqlType",
    "CqlTypeError",
    "parse_cql_type",
]

NATIVE_TYPES: frozenset[str] = frozenset(
    {
        "ascii",
        "bigint",
        "blob",
        "boolean",
        "counter",
        "date",
        "decimal",
        "double",
        "duration",
        "float",
        "inet",
        "int",
        "smallint",
        "text",
        "time",
        "timestamp",
        "timeuuid",
        "tinyint",
        "uuid",
        "varint",
    }
)
COLLECTION_TYPES: frozenset[str] = frozenset({"list", "set", "map"})

_ALIASES = {"varchar": "text"}

# Sizes of the types Cassandra writes without a length prefix inside cells and clusterings.
_FIXED_LENGTHS = {
    "bigint": 8,
    "boolean": 1,
    "double": 8,
    "float": 4,
    "int": 4,
    "timestamp": 8,
    "timeuuid": 16,
    "uuid": 16,
}


class CqlTypeError(ValueError):
    """A type string that is not valid CQL."""


@attrs.frozen(slots=True)
class CqlType:
    """One node of a CQL type tree.

    ``name`` is a native type name, a collection (``list``/``set``/``map``), ``tuple``,
    ``vector``, ``udt`` (then ``udt_name`` names it and ``field_names`` lists its
    fields once resolved) or ``custom`` (a Java class name Cassandra lets tables use).
    """

    name: str
    params: tuple[CqlType, ...] = ()
    frozen: bool = False
    dimension: int | None = None
    udt_name: str | None = None
    udt_keyspace: str | None = None
    field_names: tuple[str, ...] = ()
    custom_class: str | None = None

    @property
    def is_native(self) -> bool:
        return self.name in NATIVE_TYPES

    @property
    def is_collection(self) -> bool:
        return self.name in COLLECTION_TYPES

    @property
    def is_udt(self) -> bool:
        return self.name == "udt"

    @property
    def is_resolved(self) -> bool:
        """False for a UDT whose fields have not been looked up yet (anywhere in the tree)."""
        if self.is_udt and not self.field_names:
            return False
        return all(p.is_resolved for p in self.params)

    @property
    def is_multicell(self) -> bool:
        """Non-frozen collections and UDTs: Cassandra stores one cell per element/field."""
        return (self.is_collection or self.is_udt) and not self.frozen

    @property
    def fixed_length(self) -> int | None:
        """Byte length when Cassandra writes the value raw (no length prefix), else None."""
        if self.name == "vector":
            element = self.params[0].fixed_length
            if element is None or self.dimension is None:
                return None
            return element * self.dimension
        return _FIXED_LENGTHS.get(self.name)

    def walk(self) -> Iterator[CqlType]:
        """This node and every node under it, depth first."""
        yield self
        for param in self.params:
            yield from param.walk()

    def with_frozen(self, frozen: bool = True) -> CqlType:
        return attrs.evolve(self, frozen=frozen)

    def cql(self) -> str:
        """The CQL spelling, as ``system_schema`` would show it."""
        if self.name == "custom":
            return f"'{self.custom_class}'"
        if self.is_udt:
            inner = _quote_identifier(self.udt_name or "")
        elif self.name == "vector":
            inner = f"vector<{self.params[0].cql()}, {self.dimension}>"
        elif self.params:
            inner = f"{self.name}<{', '.join(p.cql() for p in self.params)}>"
        else:
            inner = self.name
        # Vectors are frozen by nature and Cassandra prints them without the wrapper.
        if self.frozen and self.name != "vector":
            return f"frozen<{inner}>"
        return inner

    def __str__(self) -> str:
        return self.cql()


def _quote_identifier(name: str) -> str:
    if re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


_TOKEN = re.compile(r"\s*(?:(<|>|,)|('(?:[^']|'')*')|(\"(?:[^\"]|\"\")*\")|([A-Za-z0-9_.]+))")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise CqlTypeError(f"unexpected character at {pos} in {text!r}")
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, keyspace: str | None) -> None:
        self.text = text
        self.keyspace = keyspace
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> CqlType:
        if not self.tokens:
            raise CqlTypeError("empty type string")
        result = self.parse_type()
        if self.pos != len(self.tokens):
            raise CqlTypeError(f"trailing input in {self.text!r}")
        return result

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise CqlTypeError(f"unexpected end of {self.text!r}")
        if expected is not None and token != expected:
            raise CqlTypeError(f"expected {expected!r} but found {token!r} in {self.text!r}")
        self.pos += 1
        return token

    def parse_params(self) -> list[CqlType]:
        self.take("<")
        params = [self.parse_type()]
        while self.peek() == ",":
            self.take(",")
            params.append(self.parse_type())
        self.take(">")
        return params

    def parse_type(self) -> CqlType:
        token = self.take()
        if token.startswith("'"):
            return CqlType("custom", custom_class=token[1:-1].replace("''", "'"))
        if token.startswith('"'):
            return self.udt(token[1:-1].replace('""', '"'))
        if token.endswith(".") and (self.peek() or "").startswith('"'):
            quoted = self.take()
            return self.udt(token + quoted[1:-1].replace('""', '"'))
        lowered = token.lower()
        if lowered == "frozen":
            self.take("<")
            inner = self.parse_type()
            self.take(">")
            return inner.with_frozen()
        if lowered in COLLECTION_TYPES:
            return self.collection(lowered)
        if lowered == "tuple":
            params = self.parse_params()
            # Tuples are always frozen in Cassandra, whether or not the string says so.
            return CqlType("tuple", tuple(params), frozen=True)
        if lowered == "vector":
            return self.vector()
        name = _ALIASES.get(lowered, lowered)
        if name in NATIVE_TYPES:
            return CqlType(name)
        return self.udt(lowered)

    def collection(self, name: str) -> CqlType:
        params = self.parse_params()
        expected = 2 if name == "map" else 1
        if len(params) != expected:
            raise CqlTypeError(f"{name} takes {expected} type parameter(s) in {self.text!r}")
        return CqlType(name, tuple(params))

    def vector(self) -> CqlType:
        self.take("<")
        element = self.parse_type()
        self.take(",")
        size = self.take()
        if not size.isdigit() or int(size) <= 0:
            raise CqlTypeError(f"vector dimension must be a positive integer in {self.text!r}")
        self.take(">")
        return CqlType("vector", (element,), frozen=True, dimension=int(size))

    def udt(self, name: str) -> CqlType:
        keyspace = self.keyspace
        if "." in name:
            keyspace, name = name.split(".", 1)
        return CqlType("udt", udt_name=name, udt_keyspace=keyspace)


def parse_cql_type(text: str, keyspace: str | None = None) -> CqlType:
    """Parse a type string such as ``map<text, frozen<list<int>>>``.

    Unknown bare names are taken as user-defined types of ``keyspace``; their fields are
    filled in later by whoever has ``system_schema.types`` (see ``CqlType.is_resolved``).
    """
    return _Parser(text, keyspace).parse()
