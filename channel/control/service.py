"""The controller service: the Controller plus its admin API on KANAL_CONTROLLER_HOST (default
KANAL_HOST) and KANAL_CONTROLLER_PORT, which takes the calls that `tokens` lets in."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from channel.control.api import create_admin_app
from channel.control.controller import Controller
from channel.control.tokens import TokenCheck
from channel.resources.model import PingSource
from channel.settings import Settings
from channel.sources.scheduler import PingScheduler

__all__ = ["ControllerService"]

log = logging.getLogger(__name__)


class ControllerService:
    def __init__(self, settings: Settings, tokens: TokenCheck) -> None:
        self.settings = settings
        self._tokens = tokens
        self.controller = Controller(settings)
        self._stop = asyncio.Event()
        self._pings: dict[str, tuple[dict[str, Any], PingSource]] = {}

    def _ping_sources(self) -> list[PingSource]:
        # Parsed once per stored version: the log replaces a document's dict when it changes.
        parsed: dict[str, tuple[dict[str, Any], PingSource]] = {}
        for key, doc in self.controller.log.documents.items():
            if not key.startswith("PingSource/"):
                continue
            known = self._pings.get(key)
            if known is not None and known[0] is doc:
                parsed[key] = known
                continue
            try:
                parsed[key] = (doc, PingSource.model_validate(doc))
            except ValueError:
                log.error("stored %s is not a valid PingSource; not scheduled", key)
        self._pings = parsed
        return [source for _, source in parsed.values()]

    def _ping_uids(self) -> set[str] | None:
        """The uids of every stored PingSource (valid or not), None until the log is loaded."""
        if not self.controller.log.loaded.is_set():
            return None
        return {
            str((doc.get("metadata") or {}).get("uid", ""))
            for key, doc in self.controller.log.documents.items()
            if key.startswith("PingSource/")
        }

    def shutdown(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.controller.start()
        app = create_admin_app(self.controller, self._tokens, open_reads=self.settings.controller_open_reads)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            host = self.settings.controller_bind_host()
            site = web.TCPSite(runner, host, self.settings.controller_port)
            await site.start()
            log.info(
                "controller admin API on http://%s:%d (bearer token required%s)",
                host,
                self.settings.controller_port,
                ", reads open" if self.settings.controller_open_reads else "",
            )
            scheduler = PingScheduler(self.settings, self._ping_sources, live_uids=self._ping_uids)
            async with asyncio.TaskGroup() as tg:
                work = tg.create_task(self.controller.run())
                pings = tg.create_task(scheduler.run())
                await self._stop.wait()
                work.cancel()
                scheduler.stop()
                try:
                    async with asyncio.timeout(15):
                        await asyncio.shield(pings)
                except TimeoutError:
                    pings.cancel()
        finally:
            await runner.cleanup()
            await self.controller.close()
