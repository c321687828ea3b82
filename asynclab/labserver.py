"""A small HTTP API for lessons 12 and 13, on 127.0.0.1, and the same API on virtual time.

``LabAPI`` is the behaviour of a rate-limited "enrichment" API and of three
small profile services, independent of how requests reach it:

* ``GET /records/{id}``: ``{"id": id, "enriched": true}`` after ``latency_s``;
  some attempts fail with 503 (``failure_rate`` with ``seed``, or every
  ``fail_every``-th request), some hang (``slow_rate``); above ``rate_limit``
  requests in one second it answers 429 at once, with a ``Retry-After``
  header (whole seconds).
* ``GET /users/{id}``, ``/users/{id}/orders``, ``/users/{id}/recommendations``:
  three services with their own latencies (``service_latency_s``).

``LabServer(api)`` serves it over real sockets with ``aiohttp.web`` on
127.0.0.1 and a free port (``async with LabServer(api) as server: server.url``).
``FakeSession(api)`` answers the same requests without sockets, with the small
part of ``aiohttp.ClientSession`` a client needs (``get``, ``status``,
``headers``, ``json()``, ``raise_for_status()``), so that the same client code
runs 10,000 records on a virtual clock in milliseconds.

Guarantees:

* Failures are deterministic: whether attempt *n* of record *k* fails or hangs
  depends only on ``seed``, *k* and *n* (``failure_rate``, ``slow_rate``), or
  on the request count (``fail_every``), never on timing.
* The rate limit (of ``/records``) is a sliding window on the loop's clock: at
  most ``rate_limit`` requests are *served* (not answered 429) in any
  one-second window; a 429 is not counted and costs no latency.
* Every request is recorded in ``api.hits`` in arrival order, with its arrival
  and answer times on the loop's clock and its status.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import json
import math
import random
import re
import socket
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["Hit", "LabAPI", "LabServer", "SESSION", "FakeSession", "busiest_window",
           "max_in_window", "window_series"]

SESSION = web.AppKey("session", aiohttp.ClientSession)

_TOL_S = 1e-6  # float rounding: a request exactly one second later is in the next window
DEFAULT_SERVICE_LATENCY_S = {"user": 0.05, "orders": 0.08, "recommendations": 0.06}
_ROUTES = [
    (re.compile(r"^/records/(?P<key>[^/]+)$"), "record"),
    (re.compile(r"^/users/(?P<key>[^/]+)$"), "user"),
    (re.compile(r"^/users/(?P<key>[^/]+)/orders$"), "orders"),
    (re.compile(r"^/users/(?P<key>[^/]+)/recommendations$"), "recommendations"),
]


@dataclass
class Hit:
    """One request the API received."""

    path: str
    start: float  # arrival, on the loop's clock
    end: float | None = None  # when the answer was ready
    status: int | None = None


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class LabAPI:
    """The API's behaviour: latency, failures, rate limit, and a log of every request.

    ``latency_s`` is the time a ``/records/...`` request takes (a number, or a
    function of the record id as a string). ``failure_rate`` is the chance
    that an attempt fails with 503 and ``slow_rate`` the chance that it hangs
    for ``slow_s`` (for client timeouts), both decided by ``seed``;
    ``fail_every=n`` makes every n-th request (counted over all paths) fail.
    ``rate_limit`` is the most ``/records`` requests served in any one-second
    window; the three profile services are not limited.
    """

    def __init__(self, *, latency_s: float | Callable[[str], float] = 0.05,
                 failure_rate: float = 0.0, slow_rate: float = 0.0, slow_s: float = 30.0,
                 seed: int = 0, fail_every: int | None = None, rate_limit: int | None = None,
                 service_latency_s: Mapping[str, float] | None = None) -> None:
        if not (0.0 <= failure_rate and 0.0 <= slow_rate and failure_rate + slow_rate <= 1.0):
            raise ValueError("failure_rate and slow_rate are probabilities that add up to 1 at most")
        self.latency_s = latency_s
        self.failure_rate = failure_rate
        self.slow_rate, self.slow_s = slow_rate, slow_s
        self.seed = seed
        self.fail_every = fail_every
        self.rate_limit = rate_limit
        self.service_latency_s = dict(DEFAULT_SERVICE_LATENCY_S, **(service_latency_s or {}))
        self.hits: list[Hit] = []
        self._served: deque[float] = deque()  # arrival times of served requests, last second
        self._attempts: Counter[str] = Counter()

    # -- behaviour -------------------------------------------------------
    def _fate(self, key: str, number: int) -> str:
        """What happens to request ``number`` (counted over all paths) for record ``key``.

        ``"ok"``, ``"fail"`` (answered 503) or ``"slow"`` (hangs for ``slow_s``).
        """
        self._attempts[key] += 1
        if self.fail_every and number % self.fail_every == 0:
            return "fail"
        if self.failure_rate <= 0.0 and self.slow_rate <= 0.0:
            return "ok"
        draw = random.Random(f"{self.seed}/{key}/{self._attempts[key]}").random()
        if draw < self.failure_rate:
            return "fail"
        return "slow" if draw < self.failure_rate + self.slow_rate else "ok"

    def _retry_after_s(self, now: float) -> int | None:
        """None when a request may be served now; else whole seconds to wait."""
        if self.rate_limit is None:
            return None
        while self._served and self._served[0] <= now - 1.0 + _TOL_S:
            self._served.popleft()
        if len(self._served) < self.rate_limit:
            self._served.append(now)
            return None
        return max(1, math.ceil(self._served[0] + 1.0 - now))

    def _latency(self, kind: str, key: str) -> float:
        if kind != "record":
            return self.service_latency_s[kind]
        return float(self.latency_s(key) if callable(self.latency_s) else self.latency_s)

    @staticmethod
    def _body(kind: str, key: str) -> Any:
        ident = int(key) if key.isdigit() else key
        if kind == "record":
            return {"id": ident, "enriched": True}
        if kind == "user":
            return {"id": ident, "name": f"User {ident}"}
        if kind == "orders":
            return [{"order_id": i} for i in range(3)]
        return [{"product_id": i} for i in range(5)]

    async def respond(self, path: str) -> Reply:
        """Answer one GET request for ``path``, taking the configured time on the running loop."""
        loop = asyncio.get_running_loop()
        hit = Hit(path, loop.time())
        self.hits.append(hit)
        try:
            reply = await self._answer(path, hit.start, len(self.hits))
        except BaseException:
            hit.end, hit.status = loop.time(), 499  # the client went away
            raise
        hit.end, hit.status = loop.time(), reply.status
        return reply

    async def _answer(self, path: str, now: float, number: int) -> Reply:
        for pattern, kind in _ROUTES:
            match = pattern.match(path.split("?", 1)[0])
            if match:
                break
        else:
            return Reply(404, {"error": f"no such path: {path}"})
        key = match.group("key")
        wait_s = self._retry_after_s(now) if kind == "record" else None
        if wait_s is not None:
            return Reply(429, {"error": "too many requests"}, {"Retry-After": str(wait_s)})
        fate = self._fate(key, number) if kind == "record" else "ok"  # decided on arrival
        await asyncio.sleep(self.slow_s if fate == "slow" else self._latency(kind, key))
        if fate == "fail":
            return Reply(503, {"error": "service unavailable, try again"})
        return Reply(200, self._body(kind, key))

    # -- reading ---------------------------------------------------------
    def starts(self, status: int | None = None) -> list[float]:
        """Arrival times of all requests (or of those answered with ``status``)."""
        return [h.start for h in self.hits if status is None or h.status == status]

    def statuses(self) -> Counter[int]:
        return Counter(h.status for h in self.hits)


class LabServer:
    """Serve a ``LabAPI`` over HTTP on 127.0.0.1, on a free port, while the block runs.

    ::

        async with LabServer(LabAPI(rate_limit=50)) as server:
            async with aiohttp.ClientSession(server.url) as session:
                ...

    The server runs its own event loop in a thread of its own, the way a real
    server runs in another process: its work does not compete with the
    client's loop, and its tasks do not appear on the client's timelines.
    ``api.hits`` uses that loop's clock, which is ``time.monotonic`` like the
    client's, so client and server times can be compared.

    ``routes`` adds handlers of your own (``aiohttp.web.get(...)`` route
    definitions). They run on the server's loop; ``request.app[SESSION]`` is
    an ``aiohttp.ClientSession`` to this same server, for handlers that call
    the other services.
    """

    def __init__(self, api: LabAPI | None = None, *, routes: Iterable[Any] = ()) -> None:
        self.api = api or LabAPI()
        self.routes = list(routes)
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not running; use `async with LabServer(...)`")
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        reply = await self.api.respond(request.path_qs)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def _own_session(self, app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(self.url) as session:
            app[SESSION] = session
            yield

    async def _serve(self, ready: concurrent.futures.Future) -> None:
        # Bind first, so that the port (and self.url) is known while the app starts up.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.add_routes(self.routes)
        app.router.add_get("/{tail:.*}", self._handle)
        app.cleanup_ctx.append(self._own_session)
        # handler_cancellation: a client that gives up (timeout) stops its handler, as in
        # production servers; shutdown_timeout: stopping does not wait for hanging handlers.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.2)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            self._stopping = asyncio.Event()
            ready.set_result(None)
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def _run(self, ready: concurrent.futures.Future) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # noqa: BLE001 - reported to start(), not lost in the thread
            if not ready.done():
                ready.set_exception(exc)
        finally:
            self._loop.close()

    async def start(self) -> "LabServer":
        if self._thread is not None:
            raise RuntimeError("this server is already running")
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="labserver",
                                        daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)
        return self

    async def stop(self) -> None:
        """Stop serving and wait for the server's thread to end."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        await asyncio.to_thread(thread.join)
        self.port = None

    async def __aenter__(self) -> "LabServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


# -- the same API without sockets ----------------------------------------
class _FakeResponse:
    """The part of ``aiohttp.ClientResponse`` a client reads."""

    def __init__(self, method: str, url: str, reply: Reply) -> None:
        self.method, self.url = method, url
        self.status = reply.status
        self.reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests",
                       503: "Service Unavailable"}.get(reply.status, "")
        self.headers = CIMultiDictProxy(CIMultiDict(reply.headers))
        self._body = reply.body

    async def json(self) -> Any:
        return json.loads(json.dumps(self._body))  # a fresh copy, as if it came over the wire

    async def text(self) -> str:
        return json.dumps(self._body)

    def raise_for_status(self) -> None:
        if self.status < 400:
            return
        info = aiohttp.RequestInfo(URL(self.url), self.method, CIMultiDictProxy(CIMultiDict()))
        raise aiohttp.ClientResponseError(info, (), status=self.status, message=self.reason,
                                          headers=self.headers)

    def release(self) -> None:
        pass


class _FakeRequest:
    """What ``session.get(url)`` returns: awaitable, and an async context manager."""

    def __init__(self, session: "FakeSession", url: str) -> None:
        self._session, self._url = session, url

    async def _send(self) -> _FakeResponse:
        if self._session.closed:
            raise RuntimeError("Session is closed")
        path = self._url.split("://", 1)[-1]
        path = path[path.index("/"):] if "/" in path else "/"
        reply = await self._session.api.respond(path)
        return _FakeResponse("GET", self._url, reply)

    def __await__(self):
        return self._send().__await__()

    async def __aenter__(self) -> _FakeResponse:
        return await self._send()

    async def __aexit__(self, *exc: Any) -> None:
        pass


class FakeSession:
    """A stand-in for ``aiohttp.ClientSession`` that asks a ``LabAPI`` directly, for virtual time.

    Supports ``async with FakeSession(api) as session``, ``session.get(path)``
    (awaited or as ``async with``), and ``close()``.
    """

    def __init__(self, api: LabAPI, base_url: str = "http://lab.test") -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        self.closed = False

    def get(self, url: str, **_: Any) -> _FakeRequest:
        return _FakeRequest(self, url if "://" in url else self.base_url + url)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> "FakeSession":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


# -- reading request times ------------------------------------------------
def busiest_window(times: Sequence[float], window_s: float = 1.0,
                   tol_s: float = _TOL_S) -> tuple[int, float, float]:
    """``(count, first, last)`` of the half-open window ``[t, t + window_s)`` holding most ``times``.

    ``tol_s`` absorbs float rounding: two times closer than ``window_s - tol_s``
    are in one window, two exactly ``window_s`` apart are not.
    """
    ordered = sorted(times)
    best = (0, 0.0, 0.0)
    for i, t in enumerate(ordered):
        j = bisect.bisect_left(ordered, t + window_s - tol_s, lo=i)
        if j - i > best[0]:
            best = (j - i, t, ordered[j - 1])
    return best


def max_in_window(times: Sequence[float], window_s: float = 1.0, tol_s: float = _TOL_S) -> int:
    """The most ``times`` inside any half-open window ``[t, t + window_s)``."""
    return busiest_window(times, window_s, tol_s)[0]


def window_series(times: Sequence[float], window_s: float = 1.0,
                  t0: float = 0.0) -> tuple[list[float], list[int]]:
    """How many of ``times`` fell in the last ``window_s`` seconds, at every moment it changes.

    Returns (moments, counts) relative to ``t0``, ready for a step chart: the
    count rises at each time and falls ``window_s`` later.
    """
    events = sorted([(t, 1) for t in times] + [(t + window_s, -1) for t in times],
                    key=lambda e: (e[0], e[1]))
    moments, counts, now = [0.0], [0], 0
    for t, delta in events:
        now += delta
        if moments and abs(moments[-1] - (t - t0)) < 1e-12:
            counts[-1] = now
        else:
            moments.append(t - t0)
            counts.append(now)
    return moments, counts
