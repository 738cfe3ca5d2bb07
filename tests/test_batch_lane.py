"""The batch lane: questions that arrive together are run as one batch, each caller gets its
own result (or its own error), and nobody waits for ever."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from app.answer.batch_lane import BatchLane

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """run_batch that doubles numbers, fails on negative ones, and records the batches."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    def __call__(self, items: list[int]) -> Iterator[int | BaseException]:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(list(items))
        for item in items:
            yield ValueError(f"negative: {item}") if item < 0 else item * 2


def test_each_caller_gets_its_own_result() -> None:
    lane: BatchLane[int, int] = BatchLane(Recorder(), name="test-lane")

    async def main() -> list[int]:
        return await asyncio.gather(*(lane.submit(i) for i in range(10)))

    assert asyncio.run(main()) == [i * 2 for i in range(10)]
    lane.close()


def test_requests_waiting_together_run_as_one_batch() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    lane: BatchLane[int, int] = BatchLane(recorder, max_batch=4, name="test-lane")

    async def main() -> list[int]:
        first = asyncio.ensure_future(lane.submit(0))
        await asyncio.sleep(0.05)  # the thread holds 0 and waits at the gate
        rest = [asyncio.ensure_future(lane.submit(i)) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10, 12]
    # 0 alone, then those that waited, at most four at a time, in arrival order.
    assert recorder.batches == [[0], [1, 2, 3, 4], [5, 6]]
    lane.close()


def test_an_item_that_fails_fails_only_its_own_caller() -> None:
    lane: BatchLane[int, int] = BatchLane(Recorder(), name="test-lane")

    async def main() -> list[object]:
        return await asyncio.gather(*(lane.submit(i) for i in (1, -2, 3)), return_exceptions=True)

    one, two, three = asyncio.run(main())
    assert (one, three) == (2, 6)
    assert isinstance(two, ValueError) and "negative" in str(two)
    lane.close()


@pytest.mark.parametrize("how", ["raises", "too_few"])
def test_a_broken_batch_fails_every_caller_it_did_not_answer(how: str) -> None:
    def broken(items: list[int]) -> Iterator[int | BaseException]:
        yield items[0]
        if how == "raises":
            raise OSError("the model is gone")

    lane: BatchLane[int, int] = BatchLane(broken, name="test-lane")

    async def main() -> list[object]:
        return await asyncio.gather(*(lane.submit(i) for i in (7, 8, 9)), return_exceptions=True)

    results = asyncio.run(main())
    # However the three were batched, the first of each batch was answered before it broke,
    # and every other caller got the error instead of waiting.
    assert results[0] == 7
    for item, result in zip((7, 8, 9), results, strict=True):
        assert result == item or isinstance(result, OSError | RuntimeError), result
    assert any(isinstance(r, Exception) for r in results)
    # The lane still serves after a broken batch.
    assert asyncio.run(_one(lane, 5)) == 5
    lane.close()


async def _one(lane: BatchLane[int, int], item: int) -> int:
    return await lane.submit(item)


def test_a_cancelled_caller_does_not_break_the_others() -> None:
    gate = threading.Event()
    lane: BatchLane[int, int] = BatchLane(Recorder(gate), name="test-lane")

    async def main() -> int:
        gone = asyncio.ensure_future(lane.submit(1))
        kept = asyncio.ensure_future(lane.submit(2))
        await asyncio.sleep(0.02)
        gone.cancel()
        gate.set()
        return await kept

    assert asyncio.run(main()) == 4
    lane.close()


def test_a_closed_lane_refuses_new_work() -> None:
    lane: BatchLane[int, int] = BatchLane(Recorder(), name="test-lane")
    assert asyncio.run(_one(lane, 1)) == 2
    lane.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(_one(lane, 1))
