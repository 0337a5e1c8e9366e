"""Serving the HTTP sinks on loopback, in the test's event loop or in the dev stack's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from aiohttp import web


class HttpSink(ABC):
    """An aiohttp sink: ``async with Sink(...) as sink`` serves it, ``sink.url`` is where.

    Port 0 (the default) picks a free port. Subclasses list their ``routes()``; the dev
    stack can instead put several sinks' routes on one server with ``serve()``.
    """

    url: str = ""
    _runner: web.AppRunner | None = None

    @abstractmethod
    def routes(self) -> Iterable[web.RouteDef]: ...

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner, self.url = await serve(self.routes(), host, port)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def serve(
    routes: Iterable[web.RouteDef], host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve ``routes`` until ``runner.cleanup()``; returns the runner and the bound URL."""
    app = web.Application()
    app.add_routes(list(routes))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"
