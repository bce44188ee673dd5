"""The batcher groups waiting requests, bounds the wait, and isolates a failing run function."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from qtransformer.serving.batcher import DynamicBatcher, QueueFullError


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_concurrent_requests_share_a_batch_and_results_stay_in_order():
    seen: list[list[int]] = []

    def double(reqs):
        assert threading.current_thread().name.startswith("qt-infer")  # never on the event loop
        seen.append(list(reqs))
        return [2 * r for r in reqs]

    async def main():
        b = DynamicBatcher(double, max_batch_size=8, max_wait_ms=200)
        b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(5)))
        await b.stop()
        return results

    results = _run(main())
    assert [r.value for r in results] == [0, 2, 4, 6, 8]
    assert seen == [[0, 1, 2, 3, 4]] and {r.batch_size for r in results} == {5}


def test_batch_size_one_runs_every_request_alone():
    async def main():
        b = DynamicBatcher(lambda reqs: list(reqs), max_batch_size=1, max_wait_ms=50)
        b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(4)))
        await b.stop()
        return results

    assert [r.batch_size for r in _run(main())] == [1, 1, 1, 1]


def test_expected_senders_cut_the_wait_short():
    async def main(expected):
        b = DynamicBatcher(lambda reqs: list(reqs), max_batch_size=32, max_wait_ms=1000, expected=expected)
        b.start()
        t0 = time.perf_counter()
        result = await b.submit("x")
        elapsed = time.perf_counter() - t0
        await b.stop()
        return result, elapsed

    _, alone = _run(main(lambda: 1))
    assert alone < 0.5  # a lone client does not pay max_wait_ms
    result, waited = _run(main(lambda: 4))
    assert waited >= 0.9 and result.batch_size == 1 and result.queue_ms >= 900  # the wait is bounded


def test_a_failing_run_gives_every_request_the_exception_and_the_batcher_survives():
    calls = []

    def flaky(reqs):
        calls.append(len(reqs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return list(reqs)

    async def main():
        b = DynamicBatcher(flaky, max_batch_size=4, max_wait_ms=50)
        b.start()
        first = await asyncio.gather(b.submit(1), b.submit(2))
        second = await b.submit(3)
        await b.stop()
        return first, second

    first, second = _run(main())
    assert all(isinstance(r.value, RuntimeError) for r in first) and second.value == 3


def test_a_full_queue_is_refused():
    async def main():
        release = threading.Event()
        b = DynamicBatcher(lambda reqs: release.wait(5) and list(reqs), max_batch_size=1, max_queue=1)
        b.start()
        running = asyncio.ensure_future(b.submit("a"))
        await asyncio.sleep(0.05)  # "a" is now in the worker thread
        queued = asyncio.ensure_future(b.submit("b"))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError, match="1 requests already waiting"):
            await b.submit("c")
        release.set()
        values = [(await running).value, (await queued).value]
        await b.stop()
        return values

    assert _run(main()) == ["a", "b"]
