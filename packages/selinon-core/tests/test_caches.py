from __future__ import annotations

import pytest

from selinon.caches import FIFO, LIFO, LRU, MRU, RR, CacheMissError


def fill(cache, *ids: str) -> None:  # type: ignore[no-untyped-def]
    for item_id in ids:
        cache.add(item_id, item_id.upper())


def kept(cache, ids: str = "abcd") -> str:  # type: ignore[no-untyped-def]
    found = ""
    for item_id in ids:
        try:
            cache.get(item_id)
            found += item_id
        except CacheMissError:
            pass
    return found


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(LRU, "acd"), (MRU, "bcd"), (FIFO, "bcd"), (LIFO, "abd")],
)
def test_eviction_order(cls, expected: str) -> None:  # type: ignore[no-untyped-def]
    cache = cls(size=3)
    fill(cache, "a", "b", "c")
    assert cache.get("a") == "A"  # a use: LRU keeps "a", MRU evicts it next
    fill(cache, "d")
    assert len(cache) == 3
    assert kept(cache) == expected


def test_random_replacement_keeps_size() -> None:
    cache = RR(size=2)
    fill(cache, "a", "b", "c", "d")
    assert len(cache) == 2 and "d" in kept(cache)


def test_remove_and_miss() -> None:
    cache = LRU(size=2)
    fill(cache, "a")
    cache.remove("a")
    cache.remove("never-there")
    with pytest.raises(CacheMissError):
        cache.get("a")
    with pytest.raises(KeyError):  # Selinon 1.x code catching KeyError keeps working
        cache.get("a")


@pytest.mark.parametrize("size", [0, -1, "10", True])
def test_size_must_be_positive_integer(size: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        LRU(size=size)  # type: ignore[arg-type]
