"""Result caches for ``retrieve``, configured per storage by ``cache: {name, configuration: {size}}``.

Keyed by task id, like the records themselves. Thread-safe: the pool calls them from many threads.
"""

from __future__ import annotations

import pickle
import random
import threading
from collections import OrderedDict
from typing import Any

from selinon.errors import CacheMissError

__all__ = ["BUILTIN", "FIFO", "LIFO", "LRU", "MRU", "RR", "Cache", "CacheMissError", "CachedResults"]


class Cache:
    """Base class of caches; a custom cache subclasses it and is named with ``cache: {import: ...}``."""

    def add(self, item_id: str, item: Any, task_name: str | None = None, flow_name: str | None = None) -> None:
        raise NotImplementedError

    def get(self, item_id: str, task_name: str | None = None, flow_name: str | None = None) -> Any:
        raise NotImplementedError

    def remove(self, item_id: str) -> None:
        raise NotImplementedError


class _Bounded(Cache):
    """Keeps at most ``size`` items in insertion or use order; subclasses choose which one to evict."""

    touch_on_get = False  # move an item to the end when read (LRU, MRU)
    evict_last = False  # evict from the end instead of the front (LIFO, MRU)

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"cache size must be a positive integer, got {size!r}")
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, item_id: str, item: Any, task_name: str | None = None, flow_name: str | None = None) -> None:
        with self._lock:
            if item_id in self._items:
                self._items.move_to_end(item_id)
            elif len(self._items) >= self.size:
                self._evict()
            self._items[item_id] = item

    def get(self, item_id: str, task_name: str | None = None, flow_name: str | None = None) -> Any:
        with self._lock:
            try:
                item = self._items[item_id]
            except KeyError:
                raise CacheMissError(item_id) from None
            if self.touch_on_get:
                self._items.move_to_end(item_id)
            return item

    def remove(self, item_id: str) -> None:
        with self._lock:
            self._items.pop(item_id, None)

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self) -> None:
        self._items.popitem(last=self.evict_last)


class LRU(_Bounded):
    """Evicts the least recently used item."""

    touch_on_get = True


class MRU(_Bounded):
    """Evicts the most recently used item."""

    touch_on_get = True
    evict_last = True


class FIFO(_Bounded):
    """Evicts the oldest stored item."""


class LIFO(_Bounded):
    """Evicts the newest stored item."""

    evict_last = True


class RR(_Bounded):
    """Evicts a random item."""

    def _evict(self) -> None:
        del self._items[random.choice(list(self._items))]


BUILTIN = {cls.__name__: cls for cls in (LRU, MRU, FIFO, LIFO, RR)}


class _Read:
    """One retrieve under way from the storage itself; ``stale`` once a store of its task id has begun."""

    __slots__ = ("stale",)

    def __init__(self) -> None:
        self.stale = False


class CachedResults:
    """A storage's cache as the pool uses it: it never hands out an object a caller could change under another,
    and a retrieve that raced a store never puts the older value back.

    Items are kept pickled (immutable, and one C call each way for a JSON value); every hit unpickles a fresh
    copy. A retrieve registers itself before it asks the storage; a store, delete or error record of the same
    task id, at its start and again at its end, drops the cached item and marks every such retrieve stale, and
    a stale retrieve returns its value without caching it.
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._reading: dict[str, list[_Read]] = {}

    def get(self, task_id: str, task_name: str, flow_name: str) -> Any:
        """A fresh copy of the cached result; :class:`CacheMissError` when there is none."""
        return pickle.loads(self.cache.get(task_id, task_name, flow_name))

    def begin_read(self, task_id: str) -> _Read:
        read = _Read()
        with self._lock:
            self._reading.setdefault(task_id, []).append(read)
        return read

    def end_read(self, read: _Read, task_id: str, task_name: str, flow_name: str, *result: Any) -> None:
        """Close a read; cache ``result`` (when given) unless a store of the task id began meanwhile."""
        frozen = None
        if result and not read.stale:
            try:
                frozen = pickle.dumps(result[0], pickle.HIGHEST_PROTOCOL)
            except Exception:  # an adapter that returns what cannot be pickled: not cached
                pass
        with self._lock:
            reads = self._reading[task_id]
            reads.remove(read)
            if not reads:
                del self._reading[task_id]
            if frozen is not None and not read.stale:
                self.cache.add(task_id, frozen, task_name, flow_name)

    def invalidate(self, task_id: str) -> None:
        """Drop the item and make every retrieve of ``task_id`` under way stale."""
        with self._lock:
            self.cache.remove(task_id)
            for read in self._reading.get(task_id, ()):
                read.stale = True
