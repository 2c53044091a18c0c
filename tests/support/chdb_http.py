"""A current ClickHouse engine (chdb, in-process) behind the part of ClickHouse's HTTP
interface that aiochclient and the ClickHouse adapter use.

The only ClickHouse server package on this machine is Debian's 18.16; chdb embeds a
current engine, so the adapter's modern-type code path runs against real ClickHouse
too. chdb is single-process and not thread-safe per session: one server per test
process, queries serialised by a lock and run off the event loop.

What is spoken: the query from the ``query`` URL parameter followed by the request body
(INSERT data) or from the body alone; a trailing ``FORMAT name`` chooses the output
format (TabSeparated otherwise); errors are HTTP 500 with ClickHouse's own message.
"""

from __future__ import annotations

import asyncio
import re
import socket

from aiohttp import web
from chdb import session as chdb_session

__all__ = ["ChdbHttpServer"]

_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\b", re.IGNORECASE)


class ChdbHttpServer:
    """Serves one chdb session on 127.0.0.1 at an ephemeral port; use ``async with``."""

    def __init__(self, path: str) -> None:
        self._session = chdb_session.Session(path)
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> ChdbHttpServer:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", "surrogateescape")
        query = request.query.get("query")
        sql = f"{query}\n{body}" if query is not None else body
        fmt = "TabSeparated"
        if not _INSERT.match(sql):
            found = _TRAILING_FORMAT.search(sql)
            if found is not None:
                sql, fmt = sql[: found.start()], found.group(1)
        async with self._lock:
            try:
                result = await asyncio.to_thread(self._session.query, sql, fmt)
            except Exception as exc:  # chdb raises its own error for every failed query
                return web.Response(status=500, text=str(exc))
        return web.Response(body=result.bytes())
