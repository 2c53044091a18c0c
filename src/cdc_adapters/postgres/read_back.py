"""The mirror as a reader sees it, in the domain's values: what the contract suites and
the pipeline's end-to-end checks compare with the reference state (``MirrorState``)."""

from __future__ import annotations

from typing import Any

from cdc_adapters.postgres.identifiers import qualified
from cdc_adapters.postgres.layout import TableLayout
from cdc_domain.mirror import RowKey

__all__ = ["mirror_rows"]


async def mirror_rows(connection: Any, layout: TableLayout) -> dict[RowKey, dict[str, Any]]:
    """Rows of the live view as ``{(partition key, clustering key): {column: value}}``.

    Null columns are left out (Cassandra has no null cells, only absent ones), and a
    partition holding only static data has an empty clustering key, as in Cassandra.
    """
    rows = await connection.fetch(f"SELECT * FROM {qualified(layout.schema, layout.view)}")
    values = list(layout.main.values) + (list(layout.static.values) if layout.static else [])
    result: dict[RowKey, dict[str, Any]] = {}
    for row in rows:
        pk = tuple(k.codec.from_db(row[k.name]) for k in layout.partition)
        raw_ck = [row[k.name] for k in layout.clustering]
        ck = (
            ()
            if all(v is None for v in raw_ck)
            else tuple(k.codec.from_db(v) for k, v in zip(layout.clustering, raw_ck, strict=True))
        )
        result[(pk, ck)] = {
            c.name: c.codec.from_db(row[c.name]) for c in values if row[c.name] is not None
        }
    return result
