"""The lesson-10 HTTP service: real sockets on 127.0.0.1, the same behaviour on virtual time."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from asynclab import run_virtual
from asynclab.labserver import (SESSION, FakeSession, LabAPI, LabServer, busiest_window,
                                max_in_window, window_series)


def run(coro):
    return asyncio.run(coro)


def test_server_listens_on_loopback_with_a_free_port_and_stops():
    async def main():
        async with LabServer(LabAPI(latency_s=0.0)) as server:
            url = server.url
            async with aiohttp.ClientSession(url) as session:
                async with session.get("/records/7") as resp:
                    return url, resp.status, await resp.json(), server.port
    url, status, body, port = run(main())
    assert url.startswith("http://127.0.0.1:") and port > 0
    assert (status, body) == (200, {"id": 7, "enriched": True})


def test_url_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="not running"):
        LabServer().url


def test_profile_services_answer_with_their_own_latency():
    async def main():
        api = LabAPI(service_latency_s={"orders": 0.2})
        session = FakeSession(api)
        loop = asyncio.get_running_loop()
        out = {}
        for path in ("/users/3", "/users/3/orders", "/users/3/recommendations"):
            start = loop.time()
            async with session.get(path) as resp:
                out[path] = (resp.status, await resp.json(), round(loop.time() - start, 6))
        return out
    out = run_virtual(main()).unwrap()
    assert out["/users/3"] == (200, {"id": 3, "name": "User 3"}, 0.05)
    assert out["/users/3/orders"][2] == 0.2 and len(out["/users/3/orders"][1]) == 3
    assert out["/users/3/recommendations"][2] == 0.06


def test_unknown_path_is_404():
    async def main():
        async with FakeSession(LabAPI()) as session:
            resp = await session.get("/nothing/here")
            with pytest.raises(aiohttp.ClientResponseError) as info:
                resp.raise_for_status()
            return resp.status, info.value.status
    assert run_virtual(main()).unwrap() == (404, 404)


def test_rate_limit_answers_429_with_retry_after_and_serves_at_most_n_per_window():
    async def main():
        api = LabAPI(latency_s=0.01, rate_limit=5)
        session = FakeSession(api)
        first = [await session.get(f"/records/{i}") for i in range(7)]
        await asyncio.sleep(1.0)
        later = await session.get("/records/99")
        return api, first, later
    api, first, later = run_virtual(main()).unwrap()
    assert [r.status for r in first] == [200] * 5 + [429] * 2
    assert first[5].headers["Retry-After"] == "1"
    assert later.status == 200
    assert max_in_window(api.starts(200)) <= 5


def test_rate_limit_window_boundary_is_exact_on_virtual_time():
    async def main():
        api = LabAPI(latency_s=0.0, rate_limit=2)
        session = FakeSession(api)
        statuses = []
        for _ in range(3):
            statuses += [(await session.get("/records/1")).status for _ in range(2)]
            await asyncio.sleep(1.0)  # the next pair arrives exactly one second later
        return statuses
    assert run_virtual(main()).unwrap() == [200] * 6


def test_failures_are_deterministic_per_record_and_attempt():
    async def statuses(seed):
        api = LabAPI(latency_s=0.0, failure_rate=0.3, seed=seed)
        session = FakeSession(api)
        await asyncio.gather(*(session.get(f"/records/{i}") for i in range(40)))
        await asyncio.gather(*(session.get(f"/records/{i}") for i in reversed(range(40))))
        return {(h.path, n): h.status for n, h in enumerate(api.hits)}
    a = run_virtual(statuses(1)).unwrap()
    b = run_virtual(statuses(1)).unwrap()
    c = run_virtual(statuses(2)).unwrap()
    assert a == b and a != c
    assert 0 < sum(s == 503 for s in a.values()) < 40


def test_fail_every_counts_requests():
    async def main():
        api = LabAPI(latency_s=0.0, fail_every=3)
        session = FakeSession(api)
        return [(await session.get(f"/records/{i}")).status for i in range(6)]
    assert run_virtual(main()).unwrap() == [200, 200, 503, 200, 200, 503]


def test_slow_attempts_hang_for_slow_s_and_client_timeouts_are_logged():
    async def main():
        api = LabAPI(latency_s=0.01, slow_rate=1.0, slow_s=30.0)
        session = FakeSession(api)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.0):
                await session.get("/records/1")
        return api.hits[0]
    hit = run_virtual(main()).unwrap()
    assert hit.status == 499 and hit.end == pytest.approx(2.0)


def test_probabilities_are_validated():
    with pytest.raises(ValueError):
        LabAPI(failure_rate=0.8, slow_rate=0.5)


def test_real_server_applies_rate_limit_and_extra_routes():
    async def hello(request):
        async with request.app[SESSION].get("/users/4") as resp:  # the server calls itself
            user = await resp.json()
        return web.json_response({"hello": request.match_info["name"], "user": user["name"]})

    async def main():
        api = LabAPI(latency_s=0.0, rate_limit=3)
        async with LabServer(api, routes=[web.get("/hello/{name}", hello)]) as server:
            async with aiohttp.ClientSession(server.url) as session:
                async with session.get("/hello/you") as resp:
                    greeting = await resp.json()
                statuses = []
                for i in range(5):
                    async with session.get(f"/records/{i}") as resp:
                        statuses.append((resp.status, resp.headers.get("Retry-After")))
        return greeting, statuses
    greeting, statuses = run(main())
    assert greeting == {"hello": "you", "user": "User 4"}
    assert statuses == [(200, None)] * 3 + [(429, "1")] * 2


def test_stopping_does_not_wait_for_a_hanging_handler():
    async def main():
        api = LabAPI(slow_rate=1.0, slow_s=60.0)
        loop = asyncio.get_running_loop()
        async with LabServer(api) as server:
            async with aiohttp.ClientSession(server.url) as session:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await session.get("/records/1")
            start = loop.time()
        return loop.time() - start
    assert run(main()) < 5.0


def test_max_in_window_uses_half_open_windows():
    assert max_in_window([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([0.0, 0.9999999999999999]) == 1  # float rounding of "one second later"
    assert max_in_window([]) == 0


def test_busiest_window_says_where_it_is():
    assert busiest_window([1.9, 0.0, 0.2, 1.1, 1.15]) == (3, 0.2, 1.15)  # the first busiest
    assert busiest_window([]) == (0, 0.0, 0.0)


def test_window_series_rises_and_falls():
    moments, counts = window_series([0.0, 0.2, 0.2], window_s=1.0)
    assert list(zip(moments, counts)) == [(0.0, 1), (0.2, 3), (1.0, 2), (1.2, 0)]


def test_server_runs_in_its_own_thread_and_a_second_start_is_refused():
    async def main():
        server = LabServer(LabAPI(latency_s=0.0))
        await server.start()
        try:
            with pytest.raises(RuntimeError, match="already running"):
                await server.start()
            async with aiohttp.ClientSession(server.url) as session:
                async with session.get("/records/1") as resp:
                    assert resp.status == 200
            tasks_here = {t.get_coro().__qualname__ for t in asyncio.all_tasks()}
        finally:
            await server.stop()
        await server.stop()  # stopping twice is harmless
        return tasks_here, server.port
    tasks_here, port = run(main())
    assert not any("RequestHandler" in name for name in tasks_here)
    assert port is None
