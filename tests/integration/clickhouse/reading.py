"""What a reader of a ClickHouse mirror sees, decoded back into CQL values.

Reads the table's current-state view (``SELECT <columns> FROM <database>.<table>``) as
TabSeparated text, and parses each field with its ClickHouse type and the column's CQL
type, so the round-trip tests check what the server shows. A partition with only
static data is one row whose clustering values are null, as Cassandra returns it: its
key here has no clustering values, as :class:`MirrorState` has it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import struct
import uuid
from decimal import Decimal
from typing import Any

import aiohttp

from cdc_adapters.clickhouse.column_types import split_type_args
from cdc_domain.cql_types import CqlType
from cdc_domain.schema import TableSchema
from cdc_domain.values import Duration, UdtValue, value_from_json

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "'": "'"}


async def select_tsv(url: str, sql: str) -> list[list[str]]:
    """Raw TabSeparatedWithNamesAndTypes rows (names, types, then data), not unescaped."""
    query = f"{sql} FORMAT TabSeparatedWithNamesAndTypes"
    async with aiohttp.ClientSession() as http, http.post(url, data=query) as resp:
        text = (await resp.read()).decode("utf-8", "surrogateescape")
        assert resp.status == 200, text
    return [line.split("\t") for line in text.split("\n") if line]


async def mirror_rows(url: str, database: str, schema: TableSchema) -> dict:
    """{(partition key values, clustering values): {column: value}} of the live rows."""
    exists = await select_tsv(
        url, f"SELECT count() FROM system.tables WHERE database = '{database}' "
        f"AND name = '{schema.table}'",
    )  # fmt: skip
    if exists[2] == ["0"]:
        return {}
    # The schema's columns, as a reader asks for them: a column kept after Cassandra
    # dropped it is not the table's any more.
    names = [c.name for c in schema.columns]
    columns = ", ".join(f"`{n}`" for n in names)
    lines = await select_tsv(url, f"SELECT {columns} FROM `{database}`.`{schema.table}`")
    types = lines[1]
    result = {}
    npk, nck = len(schema.partition_key), len(schema.clustering)
    for fields in lines[2:]:
        values = {
            name: decode_field(field, ch_type, _cql_type(schema, name, ch_type))
            for name, field, ch_type in zip(names, fields, types, strict=True)
        }
        keys = [c.name for c in schema.primary_key]
        pk = tuple(values.pop(n) for n in keys[:npk])
        ck = tuple(values.pop(n) for n in keys[npk : npk + nck])
        if nck and all(v is None for v in ck):
            ck = ()  # a partition with only static data
        result[(pk, ck)] = {k: v for k, v in values.items() if v is not None}
    return result


def _cql_type(schema: TableSchema, name: str, ch_type: str) -> CqlType:
    """The column's CQL type; a column the schema no longer has is read as its own type."""
    column = schema.column(name)
    if column is not None:
        return column.type
    return CqlType("bigint" if "Int" in ch_type else "text")


def decode_field(field: str, ch_type: str, cql_type: CqlType) -> Any:
    """One TSV field: a composite is a literal in ClickHouse's quoted form; a scalar is
    TSV-escaped text."""
    ch_type = _unquote_type(ch_type)
    if field == "\\N":
        return None
    inner = ch_type.removeprefix("Nullable(")[:-1] if ch_type.startswith("Nullable(") else ch_type
    if inner.startswith(("Array(", "Map(", "Tuple(")):
        value = _value(_Literal(field).parse(), inner, cql_type)
        # Cassandra has no empty collection: a column without elements is null.
        return value or None
    return _scalar(_tsv_unescape(field), inner, cql_type)


def _unquote_type(ch_type: str) -> str:
    return ch_type.replace("\\'", "'")


def _tsv_unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {**_UNESCAPE, "\\": "\\"}.get(m.group(1), m.group(1)), text)


class _Literal:
    """Parses ClickHouse's quoted text form into nested lists / (key, value) pairs / str."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def parse(self) -> Any:
        char = self.text[self.pos]
        if char in "[({":
            close = {"[": "]", "(": ")", "{": "}"}[char]
            self.pos += 1
            items: list[Any] = []
            while self.text[self.pos] != close:
                item = self.parse()
                if char == "{":
                    assert self.text[self.pos] == ":"
                    self.pos += 1
                    item = (item, self.parse())
                items.append(item)
                if self.text[self.pos] == ",":
                    self.pos += 1
            self.pos += 1
            return items
        if char == "'":
            out = []
            self.pos += 1
            while self.text[self.pos] != "'":
                c = self.text[self.pos]
                if c == "\\":
                    self.pos += 1
                    c = {**_UNESCAPE, "\\": "\\"}.get(self.text[self.pos], self.text[self.pos])
                out.append(c)
                self.pos += 1
            self.pos += 1
            return _Quoted("".join(out))
        match = re.compile(r"[^,\]\)\}:]+").match(self.text, self.pos)
        assert match is not None, self.text[self.pos :]
        self.pos = match.end()
        return None if match.group() == "NULL" else match.group()


class _Quoted(str):
    pass


def _split_args(ch_type: str) -> list[str]:
    return split_type_args(ch_type[ch_type.index("(") + 1 : -1])


def _value(parsed: Any, ch_type: str, cql_type: CqlType) -> Any:
    if parsed is None:
        return None
    if ch_type.startswith("Nullable("):
        ch_type = ch_type[len("Nullable(") : -1]
    if ch_type.startswith("Array("):
        (element,) = _split_args(ch_type)
        items = [_value(p, element, cql_type.params[0]) for p in parsed]
        return frozenset(items) if cql_type.name == "set" else items
    if ch_type.startswith("Map("):
        key_type, value_type = _split_args(ch_type)
        kq, vq = cql_type.params
        return {_value(k, key_type, kq): _value(v, value_type, vq) for k, v in parsed}
    if ch_type.startswith("Tuple("):
        fields = _split_args(ch_type)
        values = tuple(
            _value(p, t, q) for p, t, q in zip(parsed, fields, cql_type.params, strict=True)
        )
        return None if all(v is None for v in values) else values
    return _scalar(str(parsed), ch_type, cql_type)


def _scalar(text: str, ch_type: str, cql_type: CqlType) -> Any:
    name = cql_type.name
    if cql_type.is_udt:
        data = json.loads(text)
        return UdtValue(tuple((f, value_from_json(data.get(f))) for f in cql_type.field_names))
    if name == "map":  # the JSON String fallback of servers without Map
        return value_from_json(json.loads(text)) or None
    if name in ("list", "set", "tuple") and ch_type == "String":
        value = value_from_json(json.loads(text))
        return frozenset(value) if name == "set" else value
    if name in ("ascii", "text"):
        return text
    if name in ("int", "bigint", "smallint", "tinyint", "varint"):
        return int(text)
    if name == "decimal":
        return Decimal(text)
    if name == "float":
        return struct.unpack("f", struct.pack("f", float(text)))[0]
    if name == "double":
        return float(text)
    if name == "boolean":
        return text == "1"
    if name in ("uuid", "timeuuid"):
        return uuid.UUID(text)
    if name == "inet":
        return ipaddress.ip_address(text)
    if name == "blob":
        return text.encode("utf-8", "surrogateescape")
    if name == "time":
        nanos = int(text)
        seconds, rest = divmod(nanos, 1_000_000_000)
        return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, rest // 1000)
    if name == "timestamp":
        if ch_type == "Int64":
            return _EPOCH + dt.timedelta(milliseconds=int(text))
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    if name == "date":
        if ch_type == "Int32":
            return dt.date(1970, 1, 1) + dt.timedelta(days=int(text))
        return dt.date.fromisoformat(text)
    if name == "duration":
        sign = -1 if text.startswith("-") else 1
        months, days, nanos = re.fullmatch(r"-?(\d+)mo(\d+)d(\d+)ns", text).groups()
        return Duration(sign * int(months), sign * int(days), sign * int(nanos))
    raise AssertionError(f"no decoder for {cql_type.cql()} as {ch_type}")
