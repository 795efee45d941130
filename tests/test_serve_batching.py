"""GatedBatcher: requests that queue while a batch is in flight form the next batch."""

from __future__ import annotations

import asyncio

import pytest

from seqrec_ray.serve.batching import GatedBatcher


class Recorder:
    """A batch handler that records every batch and holds it until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if -1 in items:
            raise ValueError("bad item in batch")
        return [i * 10 for i in items]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_a_lone_request_goes_at_once_and_queued_ones_form_the_next_batch():
    async def scenario():
        handler = Recorder()
        batcher = GatedBatcher(handler, max_batch_size=32, max_in_flight=1)
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0)  # the first batch starts with one item, nothing waited for
        later = [asyncio.create_task(batcher.submit(i)) for i in range(2, 7)]
        await asyncio.sleep(0)
        assert handler.batches == [[1]]  # the rest wait for the slot, not for a timer
        handler.release.set()
        return await first, await asyncio.gather(*later), handler.batches

    first, later, batches = run(scenario())
    assert first == 10 and later == [20, 30, 40, 50, 60]
    assert batches == [[1], [2, 3, 4, 5, 6]]


def test_batches_respect_the_size_cap_and_the_in_flight_limit():
    async def scenario():
        handler = Recorder()
        batcher = GatedBatcher(handler, max_batch_size=4, max_in_flight=2)
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(10)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        started_while_blocked = [list(b) for b in handler.batches]
        handler.release.set()
        return started_while_blocked, await asyncio.gather(*tasks), handler.batches

    started, results, batches = run(scenario())
    # The first two arrivals take both slots at once; the rest queue and leave in fours.
    assert started == [[0], [1]]
    assert results == [i * 10 for i in range(10)]
    assert batches == [[0], [1], [2, 3, 4, 5], [6, 7, 8, 9]]


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    async def scenario():
        handler = Recorder()
        batcher = GatedBatcher(handler, max_batch_size=8, max_in_flight=1)
        blocker = asyncio.create_task(batcher.submit(-1))
        await asyncio.sleep(0)
        handler.release.set()
        with pytest.raises(ValueError, match="bad item"):
            await blocker
        return await asyncio.gather(batcher.submit(3), batcher.submit(4))

    assert run(scenario()) == [30, 40]


def test_a_handler_that_loses_results_is_an_error_not_a_hang():
    async def short(items):
        return items[:-1]

    async def scenario():
        batcher = GatedBatcher(short, max_batch_size=8)
        return await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)

    results = run(scenario())
    assert all(isinstance(r, RuntimeError) and "0 results for 1 items" in str(r) for r in results)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        GatedBatcher(lambda items: items, max_batch_size=0)
