"""A fake paginated web API that records what a client did to it (lesson and exercise 11).

``PagedAPI`` serves numbered pages of items through sessions, the way an HTTP
client library does (``aiohttp.ClientSession`` is the model)::

    api = PagedAPI(items_per_page=[3, 3, 1], latency_s=1.0)
    async with api.session() as session:     # a session is open from the moment it is made
        page = await session.get_page(1)     # Page(number=1, items=[...], total_pages=3)

Every page says how many pages there are (``total_pages``); a page number past
the end gets an empty page, as many real APIs answer, and the request is
recorded, so that a check can say "you asked for page 4 of 3". A page listed in
``failing`` raises ``PageError`` at the end of its latency. A request on a
closed session raises ``RuntimeError``, as aiohttp does.

Guarantees, all on the loop's clock (virtual time in the checks):

* every request is recorded in ``requests`` in the order it started, with its
  session, start, end and outcome ("ok", "error", "cancelled" or "running");
* ``max_in_flight`` is the largest number of requests running at once (one
  that ends and one that starts at the same instant do not overlap);
* every session is recorded in ``sessions`` with when it was opened and closed;
  closing twice is harmless, as for real clients.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Collection, Sequence

__all__ = ["Page", "PageError", "PageRequest", "PagedAPI", "Session"]


class PageError(ConnectionError):
    """The API failed to serve a page (a 503, a reset connection...)."""


@dataclass(frozen=True)
class Page:
    """One page of results: its number, its items, and how many pages there are in all."""

    number: int
    items: list[str]
    total_pages: int


@dataclass
class PageRequest:
    """One call to ``Session.get_page``."""

    page: int
    session: int  # the session's number, from 1
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "error", "cancelled" or "running"


def _now() -> float:
    return asyncio.get_running_loop().time()


class Session:
    """A connection to the API. Open from the moment it is created; close it once you are done.

    Use it as ``async with api.session() as session:`` (closed when the block
    ends, however it ends) or call ``await session.close()`` yourself.
    """

    def __init__(self, api: "PagedAPI", number: int) -> None:
        self._api = api
        self.number = number
        self.opened_at = _now()
        self.closed_at: float | None = None
        self.in_flight_at_close = 0  # requests of this session still running when it closed

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    async def get_page(self, number: int) -> Page:
        """Take the page's latency, then return the page (or raise ``PageError``)."""
        if self.closed:
            raise RuntimeError("Session is closed")
        return await self._api._serve(self, number)

    async def close(self) -> None:
        """Release the connection."""
        if self.closed_at is None:
            self.closed_at = _now()
            self.in_flight_at_close = sum(1 for r in self._api.requests
                                          if r.session == self.number and r.outcome == "running")

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Session {self.number} {'closed' if self.closed else 'open'}>"


class PagedAPI:
    """The fake API: ``items_per_page[i]`` items on page ``i + 1``.

    ``latency_s`` is one figure for every page or one per page; ``failing``
    holds the numbers of the pages that raise ``PageError``.
    """

    def __init__(self, items_per_page: Sequence[int], latency_s: float | Sequence[float] = 1.0,
                 failing: Collection[int] = ()) -> None:
        if not items_per_page:
            raise ValueError("an API needs at least one page")
        self.items_per_page = list(items_per_page)
        self.total_pages = len(self.items_per_page)
        if isinstance(latency_s, (int, float)):
            self.latency_s = [float(latency_s)] * self.total_pages
        else:
            self.latency_s = [float(t) for t in latency_s]
            if len(self.latency_s) != self.total_pages:
                raise ValueError("give one latency per page")
        self.failing = frozenset(failing)
        self.requests: list[PageRequest] = []
        self.sessions: list[Session] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.history: list[tuple[float, int]] = [(0.0, 0)]  # (time, in flight) after each change

    # -- what the client uses ----------------------------------------------
    def session(self) -> Session:
        """Open a new session (a connection)."""
        session = Session(self, len(self.sessions) + 1)
        self.sessions.append(session)
        return session

    @staticmethod
    def item(page: int, index: int) -> str:
        """The name of the ``index``-th item (from 0) of ``page``: ``"p2.0"``."""
        return f"p{page}.{index}"

    def items(self, pages: int | None = None) -> list[str]:
        """Every item of pages 1 to ``pages`` (all pages when None), in order."""
        last = self.total_pages if pages is None else pages
        return [self.item(p, i) for p in range(1, last + 1) for i in range(self.items_per_page[p - 1])]

    def latency(self, page: int) -> float:
        """The latency of ``page``; a page past the end answers as fast as the last one."""
        inside = min(max(page, 1), self.total_pages)
        return self.latency_s[inside - 1]

    async def _serve(self, session: Session, number: int) -> Page:
        request = PageRequest(number, session.number, _now())
        self.requests.append(request)
        self._change(+1)
        try:
            await asyncio.sleep(self.latency(number))
            if number in self.failing:
                request.outcome = "error"
                raise PageError(f"page {number} is unavailable (503)")
            request.outcome = "ok"
            if not 1 <= number <= self.total_pages:
                return Page(number, [], self.total_pages)
            return Page(number, [self.item(number, i) for i in range(self.items_per_page[number - 1])],
                        self.total_pages)
        except asyncio.CancelledError:
            request.outcome = "cancelled"
            raise
        finally:
            request.end = _now()
            self._change(-1)

    def _change(self, delta: int) -> None:
        self.in_flight += delta
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.history.append((_now(), self.in_flight))

    # -- what a check or a lesson reads --------------------------------------
    def requests_for(self, page: int) -> list[PageRequest]:
        return [r for r in self.requests if r.page == page]

    def running(self) -> list[PageRequest]:
        """The requests that have not ended."""
        return [r for r in self.requests if r.outcome == "running"]

    def past_the_end(self) -> list[PageRequest]:
        """Requests for pages that do not exist (after the last page, or before page 1)."""
        return [r for r in self.requests if not 1 <= r.page <= self.total_pages]

    def open_sessions(self) -> list[Session]:
        return [s for s in self.sessions if not s.closed]

    def in_flight_series(self) -> tuple[list[float], list[int]]:
        """Times and in-flight counts, one value per instant (a hand-over is not a dip)."""
        last = dict(self.history)
        return list(last), list(last.values())
