"""The controller service: the Controller plus its admin API on KANAL_CONTROLLER_PORT."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from channel.control.api import create_admin_app
from channel.control.controller import Controller
from channel.settings import Settings

__all__ = ["ControllerService"]

log = logging.getLogger(__name__)


class ControllerService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.controller = Controller(settings)
        self._stop = asyncio.Event()

    def shutdown(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.controller.start()
        runner = web.AppRunner(create_admin_app(self.controller), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.controller_port)
            await site.start()
            log.info(
                "controller admin API on http://%s:%d",
                self.settings.host,
                self.settings.controller_port,
            )
            async with asyncio.TaskGroup() as tg:
                work = tg.create_task(self.controller.run())
                await self._stop.wait()
                work.cancel()
        finally:
            await runner.cleanup()
            await self.controller.close()
