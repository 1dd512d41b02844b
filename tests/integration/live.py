"""A service served by a real uvicorn on loopback, in a background thread.

Async tests use ``served``: it waits with ``await`` so the test's own event loop keeps running
the apps and connections it owns while the server starts (a blocked loop can hold a database
lock the starting server needs). The socket is bound before the thread starts, so no other
connection can take the port in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from fastapi import FastAPI

START_SECONDS = 60


AppOrFactory = FastAPI | Callable[[str], FastAPI]  # a factory is given the server's URL


class LiveServer:
    def __init__(self, app: AppOrFactory) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        if not isinstance(app, FastAPI):
            app = app(self.url)
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.deadline = 0.0

    def start(self) -> None:
        self.thread.start()
        self.deadline = time.monotonic() + START_SECONDS

    def ready(self) -> bool:
        if self.server.started:
            return True
        if not self.thread.is_alive():
            raise RuntimeError("the server failed while starting; its log says why")
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"the server did not start within {START_SECONDS} s")
        return False

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


@contextlib.contextmanager
def serving(app: AppOrFactory) -> Iterator[str]:
    live = LiveServer(app)
    live.start()
    try:
        while not live.ready():
            time.sleep(0.05)
        yield live.url
    finally:
        live.stop()


@contextlib.asynccontextmanager
async def served(app: AppOrFactory) -> AsyncIterator[str]:
    live = LiveServer(app)
    live.start()
    try:
        while not live.ready():
            await asyncio.sleep(0.05)
        yield live.url
    finally:
        await asyncio.to_thread(live.stop)
