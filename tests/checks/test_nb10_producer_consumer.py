"""The process_items check passes the reference and rejects what learners really write."""

from __future__ import annotations

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
import asyncio

async def process_items(produce, count, process, num_consumers=3, maxsize=5):
    queue = asyncio.Queue(maxsize=maxsize)

    async def producer():
        for i in range(count):
            await queue.put(await produce(i))
        for _ in range(num_consumers):
            await queue.put(None)

    async def consumer():
        done = 0
        while (item := await queue.get()) is not None:
            await process(item)
            done += 1
        return done

    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer())
        workers = [tg.create_task(consumer()) for _ in range(num_consumers)]
    return [w.result() for w in workers]
'''

JOIN_AND_CANCEL = '''
import asyncio

async def process_items(produce, count, process, num_consumers=3, maxsize=5):
    queue = asyncio.Queue(maxsize=maxsize)
    counts = [0] * num_consumers

    async def consumer(n):
        while True:
            item = await queue.get()
            try:
                await process(item)
                counts[n] += 1
            finally:
                queue.task_done()

    workers = [asyncio.create_task(consumer(n)) for n in range(num_consumers)]
    for i in range(count):
        await queue.put(await produce(i))
    await queue.join()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return counts
'''


def variant_of(old: str, new: str, base: str = REFERENCE) -> str:
    assert old in base, old
    return base.replace(old, new)


WRONG = {
    "unbounded queue": (variant_of("asyncio.Queue(maxsize=maxsize)", "asyncio.Queue()"),
                        "queue is bounded (backpressure)", "items ahead of the consumers"),
    "one sentinel for three consumers": (variant_of(
        "        for _ in range(num_consumers):\n            await queue.put(None)",
        "        await queue.put(None)"), "finishes",
        "(a deadlock); still waiting when time stopped: process_items, consumer (2 tasks)"),
    "consumer that never stops": (variant_of(
        "        while (item := await queue.get()) is not None:",
        "        while True:\n            item = await queue.get()\n            if item is None:\n"
        "                continue"), "finishes", "deadlock"),
    "consumers never cancelled after join": (JOIN_AND_CANCEL.replace(
        "    for w in workers:\n        w.cancel()\n    await asyncio.gather(*workers, "
        "return_exceptions=True)\n", ""), "consumers stopped", "(consumer, consumer, consumer): they never stopped"),
    "one consumer only": (variant_of("for _ in range(num_consumers)]",
                                     "for _ in range(1)]").replace(
        "        for _ in range(num_consumers):\n            await queue.put(None)",
        "        await queue.put(None)"),
        "consumers work at the same time", "one item at a time"),
    "producer loses the last item": (variant_of("for i in range(count):", "for i in range(count - 1):"),
                                     "every item processed once", "1 item(s) never processed"),
    "time.sleep in a consumer": (variant_of("            await process(item)\n",
                                            "            time.sleep(0.01)\n            await process(item)\n")
                                 .replace("import asyncio", "import asyncio, time"),
                                 "never blocks the event loop", "time.sleep(0.01) in consumer()"),
    "forgotten await on put": (variant_of("await queue.put(await produce(i))",
                                          "queue.put(await produce(i))"),
                               "every item processed once", "never processed"),
    "forgotten await on get": (variant_of("while (item := await queue.get()) is not None:",
                                          "while (item := queue.get()) is not None:"),
                               "every coroutine awaited", "a coroutine object Queue.get()"),
    "sentinels and join() mixed": (variant_of(
        "        while (item := await queue.get()) is not None:\n            await process(item)\n"
        "            done += 1\n",
        "        while True:\n            item = await queue.get()\n            if item is None:\n"
        "                break\n            await process(item)\n            done += 1\n"
        "            queue.task_done()\n").replace(
        "            await queue.put(None)\n", "            await queue.put(None)\n"
        "        await queue.join()\n"),
        "finishes", "(a deadlock); still waiting when time stopped: process_items, producer"),
    "consumers awaited one after another": (variant_of(
        "    async with asyncio.TaskGroup() as tg:\n        tg.create_task(producer())\n"
        "        workers = [tg.create_task(consumer()) for _ in range(num_consumers)]\n"
        "    return [w.result() for w in workers]",
        "    feeding = asyncio.create_task(producer())\n"
        "    counts = [await consumer() for _ in range(num_consumers)]\n"
        "    await feeding\n    return counts"),
        "consumers work at the same time", "one item at a time"),
    "one producer per consumer": (JOIN_AND_CANCEL.replace(
        "    for i in range(count):\n        await queue.put(await produce(i))\n",
        "    async def producer():\n        for i in range(count):\n"
        "            await queue.put(await produce(i))\n"
        "    await asyncio.gather(*(producer() for _ in range(num_consumers)))\n"),
        "every item processed once", "processed more than once (item-0: 3 times)"),
    "stub": ('''
async def process_items(produce, count, process, num_consumers=3, maxsize=5):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
@pytest.mark.parametrize("code", [REFERENCE, JOIN_AND_CANCEL], ids=["sentinels", "join-cancel"])
def test_correct_solutions_pass(code, variant):
    report = check(define(code, "process_items"), variant=variant)
    assert report.passed, report.text()


# What each wrong solution's failed property must say the code did.
DIAGNOSIS = {
    'unbounded queue': 'queue unbounded',
    'one sentinel for three consumers': 'waits forever',
    'consumer that never stops': 'waits forever',
    'consumers never cancelled after join': 'consumers never stopped',
    'one consumer only': 'consumers one after another',
    'producer loses the last item': 'items lost',
    'time.sleep in a consumer': 'blocked the loop',
    'forgotten await on put': 'items lost',
    'forgotten await on get': 'forgotten await',
    'sentinels and join() mixed': 'waits forever',
    'consumers awaited one after another': 'consumers one after another',
    'one producer per consumer': 'item processed twice',
    'stub': 'not written',
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment = WRONG[name]
    report = check(define(code, "process_items"))
    assert_diagnosed(report, prop, fragment, DIAGNOSIS[name])


def test_a_deadlock_gets_the_queue_hint():
    report = check(define(WRONG["one sentinel for three consumers"][0], "process_items"))
    hint = next(f.hint for f in report.findings if f.prop == "finishes")
    assert "one sentinel per consumer" in hint and "task_done()" in hint


def test_join_waiting_for_sentinels_names_exactly_the_stuck_tasks():
    """The consumers stopped; only the producer (in join()) and the caller still wait."""
    report = check(define(WRONG["sentinels and join() mixed"][0], "process_items"))
    message = failed_props(report)["finishes"]
    assert message.endswith("still waiting when time stopped: process_items, producer"), message


def test_hidden_variant_rejects_an_unbounded_queue_too():
    report = check(define(WRONG["unbounded queue"][0], "process_items"), variant="hidden")
    assert "queue is bounded (backpressure)" in failed_props(report)
