"""REST API of the local org (filled in next)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer


def setup(app: web.Application, server: DevOrgServer) -> None:
    server.rest = None
