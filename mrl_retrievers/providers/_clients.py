"""SDK client lifetimes shared by the hosted adapters: one sync client, one async client per loop.

An async SDK client's connection pool belongs to the event loop that opened it: reusing it from
another loop (``asyncio.run`` twice, per-test loops, Jupyter) fails with "Event loop is closed".
So each running loop gets its own async client, kept in a weak map that forgets a loop once it is
garbage-collected.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, Awaitable, Callable


class ClientPool:
    """Lazily built SDK clients: ``sync()`` for the sync path, ``for_running_loop()`` for async.

    Args:
        make_sync / make_async: build a new client (called under a lock, at most once per loop).
        close_async: coroutine function that closes an async client.
    """

    def __init__(self, make_sync: Callable[[], Any], make_async: Callable[[], Any],
                 close_async: Callable[[Any], Awaitable[None]]) -> None:
        self._make_sync, self._make_async, self._close_async = make_sync, make_async, close_async
        self._sync: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def sync(self) -> Any:
        with self._lock:
            if self._sync is None:
                self._sync = self._make_sync()
            return self._sync

    def for_running_loop(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = self._async[loop] = self._make_async()
            return client

    def close(self) -> None:
        """Close the sync client (async clients need their loop: see ``aclose``)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the sync client and the running loop's async client."""
        self.close()
        with self._lock:
            client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await self._close_async(client)


__all__ = ["ClientPool"]
