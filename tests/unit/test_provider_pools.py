"""Unit tests for videoworker.provider.pools: several small httpx pools, each request to the least busy."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from videoworker.provider.pools import Pools


def _pools(connections: int, size: int, seen: list[int]) -> Pools:
    made = 0

    def make(limit: int) -> httpx.AsyncClient:
        nonlocal made
        index, made = made, made + 1
        assert limit <= size

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(index)
            return httpx.Response(200, json={"pool": index})

        return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://provider.test")

    return Pools(make, connections, size=size)


def test_enough_pools_for_the_connections() -> None:
    assert len(_pools(92, 16, [])) == 6
    assert len(_pools(16, 16, [])) == 1
    assert len(_pools(1, 16, [])) == 1


async def test_requests_in_flight_spread_over_the_pools_then_free_them() -> None:
    seen: list[int] = []
    pools = _pools(6, 2, seen)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(6):  # held open at once: two per pool, never three in one
            await stack.enter_async_context(pools.stream("GET", "/videos/x"))
        assert sorted(seen) == [0, 0, 1, 1, 2, 2]
    seen.clear()
    for _ in range(3):
        await _one(pools)
    assert seen == [0, 0, 0]  # all free again, and each request ended before the next: the first pool each time
    await pools.aclose()


async def test_a_failed_request_frees_its_place() -> None:
    seen: list[int] = []
    failing = True
    made = 0

    def make(limit: int) -> httpx.AsyncClient:
        nonlocal made
        index, made = made, made + 1

        def handler(request: httpx.Request) -> httpx.Response:
            if failing:
                raise httpx.ConnectError("refused", request=request)
            seen.append(index)
            return httpx.Response(200)

        return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://provider.test")

    pools = Pools(make, 2, size=1)
    for _ in range(3):
        with contextlib.suppress(httpx.ConnectError):
            await _one(pools)
    failing = False
    async with pools.stream("GET", "/a"), pools.stream("GET", "/b"):
        assert sorted(seen) == [0, 1]  # neither pool still counts a failed request as in flight
    await pools.aclose()


async def _one(pools: Pools) -> None:
    async with pools.stream("GET", "/videos/x") as response:
        await response.aread()


async def test_every_pool_is_closed_even_when_one_fails_to_close() -> None:
    closed: list[int] = []
    made = 0

    class Client(httpx.AsyncClient):
        def __init__(self, index: int) -> None:
            super().__init__(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
            self.index = index

        async def aclose(self) -> None:
            closed.append(self.index)
            await super().aclose()
            if self.index == 0:
                raise RuntimeError("close failed")

    def make(limit: int) -> httpx.AsyncClient:
        nonlocal made
        made += 1
        return Client(made - 1)

    pools = Pools(make, 3, size=1)
    with pytest.raises(RuntimeError, match="close failed"):
        await pools.aclose()
    assert closed == [0, 1, 2]
