"""Node changes fanned out to watching consoles, coalesced.

`NodeFeed.changed(id)` marks a node dirty for every watcher; a watcher's
`next_batch()` hands over the set of dirty ids at most once per
`min_interval` (0.25 s: four batches a second), so a node that changed ten
times in between is sent once, as it is now. 10,000 nodes updating cost each
console at most four messages a second.

Sources: the node store (any thread, through `changed_threadsafe`) and the
live state (metrics, instance counts; on the loop).

`Latest` is the same idea for one record (a run, a rollout): a service
listener puts each new state from any thread, and `until(finished)` yields the
newest one whenever it changed, ending after a finished state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Latest", "NodeFeed", "Watcher"]

T = TypeVar("T")

MIN_INTERVAL = 0.25


class Watcher:
    """One console's view of the feed: the ids that changed since its last batch."""

    def __init__(self, feed: NodeFeed) -> None:
        self._feed = feed
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._last = -float("inf")

    def mark(self, node_id: str) -> None:
        self._dirty.add(node_id)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def next_batch(self) -> set[str] | None:
        """The ids changed since the last batch (never empty); None once the feed is closed."""
        while True:
            await self._wake.wait()
            if self._closed:
                return None
            wait = self._last + self._feed.min_interval - self._feed.clock()
            if wait > 0:
                await asyncio.sleep(wait)  # let more changes pile up
                if self._closed:
                    return None
            self._wake.clear()
            if self._dirty:
                batch, self._dirty = self._dirty, set()
                self._last = self._feed.clock()
                return batch


class NodeFeed:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loop = loop
        self.min_interval = min_interval
        self.clock = clock
        self._watchers: set[Watcher] = set()

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def changed(self, node_id: str) -> None:
        """Node `node_id` changed (call on the loop)."""
        for watcher in self._watchers:
            watcher.mark(node_id)

    def changed_threadsafe(self, node_id: str, _record: object = None) -> None:
        """Node `node_id` changed (call from any thread; a store listener)."""
        if not self._watchers:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is watching any more
            self.loop.call_soon_threadsafe(self.changed, node_id)

    @contextlib.contextmanager
    def watch(self) -> Iterator[Watcher]:
        """A watcher for as long as the block runs; register before taking the snapshot."""
        watcher = Watcher(self)
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)
            watcher.close()

    def close(self) -> None:
        """End every watch (hub shutdown)."""
        for watcher in list(self._watchers):
            watcher.close()
        self._watchers.clear()


class Latest(Generic[T]):
    """The newest state of one record for a watching stream; create it on the hub's loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed: asyncio.Queue[T] = asyncio.Queue()

    def put(self, item: T) -> None:
        """A service listener: any thread, any time (a no-op once the hub's loop is closed)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._changed.put_nowait, item)

    async def until(self, finished: Callable[[T], bool]) -> AsyncIterator[T]:
        """Each change (a slow reader skips to the newest), ending after the first finished one."""
        while True:
            item = await self._changed.get()
            while not self._changed.empty():
                item = self._changed.get_nowait()
            yield item
            if finished(item):
                return
