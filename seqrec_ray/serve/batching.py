"""Natural batching for a chain of calls: requests that arrive while a batch is in
flight travel together as the next batch.

Why not ``@serve.batch`` here: in Ray 2.60 its loop forms the next batch as soon as
``batch_wait_timeout_s`` expires, even while earlier batches still run, so with requests
arriving one by one over HTTP every batch holds one request (measured: at 32 concurrent
/recommend requests, 95 % of batches had size 1) unless a wait is added to every request.
Here the next batch is formed only when a slot frees, so at low load a request goes
alone with no wait, and under load everything that queued meanwhile goes together.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class GatedBatcher:
    """``await batcher.submit(item)`` -> that item's result from ``handler(items)``.

    ``handler`` takes a list of up to ``max_batch_size`` items and returns one result per
    item, in order. At most ``max_in_flight`` batches run at once. An exception from the
    handler goes to every caller in that batch; other batches are unaffected.
    """

    def __init__(
        self,
        handler: Callable[[list[Any]], Awaitable[Sequence[Any]]],
        max_batch_size: int = 32,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_in_flight < 1:
            raise ValueError(f"max_batch_size and max_in_flight must be >= 1, got {max_batch_size}, {max_in_flight}")
        self._handler = handler
        self.max_batch_size = max_batch_size
        self.max_in_flight = max_in_flight
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._in_flight = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent sizes, for stats endpoints and tests

    async def submit(self, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._maybe_start()
        return await future

    def _maybe_start(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        live = [(item, future) for item, future in batch if not future.cancelled()]  # clients that left
        self.batch_sizes.append(len(live))
        try:
            if live:
                results = await self._handler([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch handler returned {len(results)} results for {len(live)} items")
                for (_, future), result in zip(live, results):
                    if not future.done():
                        future.set_result(result)
        except BaseException as exc:  # every caller of this batch sees the error
            error = exc if isinstance(exc, Exception) else RuntimeError(f"batch interrupted: {exc!r}")
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight -= 1
            self._maybe_start()
