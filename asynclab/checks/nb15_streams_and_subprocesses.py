"""Checks for notebook 15_streams_and_subprocesses: a chat server with rooms.

``serve_chat(host, port, *, ready, max_queue)`` is judged with **real sockets** on the loopback
interface (127.0.0.1, port 0) and the real clock, by scripted clients that the check drives:

* **rooms**: clients join two rooms one after the other (a server that serves one client at a
  time never answers the second one's ``JOIN``), then all of them talk at once. Each client must
  get every line of the others in its room, in each sender's order, and nothing else: not its own
  lines, nothing from the other room;
* **a slow client**: a third member of a room stops reading (with a tiny receive buffer) while
  another floods the room with megabytes of lines. The fast member must get all of them while the
  slow one has read nothing; then the slow one reads and must find that the server cut it off
  (its queue of ``max_queue`` lines overflowed) instead of queueing for it without limit;
* **leaving**: one client vanishes abruptly (a TCP reset), another sends ``QUIT``. The others go
  on talking, the one who quit sees the end of the stream, and their tasks end;
* **shutdown**: the check cancels ``serve_chat`` with clients still connected; it must end, close
  every connection, stop listening and leave no task behind.

Every wait is bounded. The bounds (``STALL_S`` and friends) are generous: a correct server meets
them with a large margin on a loaded machine, and only a server that is stuck runs them out, so
the verdict does not depend on how fast the machine is. What the check asserts is the order of
events (all lines reached the fast client *while* the slow one had read nothing), never a
duration.

The run happens on a fresh event loop in a worker thread (the notebook's own loop stays free),
under the course's blocking-call detector (``time.sleep`` on the loop is reported with its line),
with "coroutine ... was never awaited" warnings and crashed tasks recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import random
import socket
import struct
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from asynclab.blocking import BlockingCall, BlockingDetector
from asynclab.checking import Finding, Report, describe_error, require_coroutine_function
from asynclab.timeline import Timeline, task_coroutine, trace

NOTEBOOK = "15_streams_and_subprocesses"
EXERCISE = "serve_chat"
HOST = "127.0.0.1"
STALL_S = 2.0  # no progress for this long, where a correct server needs milliseconds: stuck
STEP_S = 1.0  # one answer (an OK, an end of stream) that should come at once
WALL_LIMIT_S = 20.0  # the whole run, in real seconds; only a server that froze its loop gets here
CHECK_PREFIX = "check:"  # the names of the check's own tasks
DEFAULT_SEED = 18
WINDOW = 2  # the flooder sends at most this many lines ahead of what the fast listener read
# The flood must overflow everything between the server and the slow client: the kernel's
# socket buffers (a few MiB on Linux: the sender's grows up to 4 MiB), the writer's buffer
# (64 KiB) and the client's queue (max_queue lines). 8 MiB is twice what Linux takes; on a system
# whose loopback holds more, the check measures it first and floods twice that (see
# loopback_capacity).
FLOOD_BYTES = 8 * 1024 * 1024
PROBE_LIMIT = 64 * 1024 * 1024  # the most loopback_capacity sends before it gives up


@dataclass(frozen=True)
class Plan:
    rooms: dict[str, tuple[str, ...]]  # room -> its members, in the order they join
    lines_each: int  # lines each member of the first scene says
    flood_room: str
    fast: tuple[str, str]  # the flooder and the fast listener
    slow: str
    line_bytes: int  # the size of one flood line, newline included
    # Larger than any burst the check sends a client that reads (the rooms scene sends each
    # client at most 3 x 9 lines at once, a server that sends to every room 7 x 9; the flooder
    # stays WINDOW lines ahead), and small enough that the flood overflows the slow client's.
    max_queue: int
    leaver: str  # vanishes abruptly (reset)
    quitter: str  # says QUIT
    stayer: str  # stays in the room the other two leave

    def flood_lines(self, capacity: int = 0) -> int:
        """Lines to flood with, when a non-reading client's connection holds ``capacity`` bytes."""
        total = max(FLOOD_BYTES, 2 * (capacity + self.max_queue * self.line_bytes))
        return total // self.line_bytes

    def room_of(self, who: str) -> str:
        return next(room for room, members in self.rooms.items() if who in members)

    def everyone(self) -> list[str]:
        return [who for members in self.rooms.values() for who in members]


def plan(variant: str = "public", seed: int | None = None) -> Plan:
    if variant == "public":
        return Plan(rooms={"red": ("alice", "bob", "carol"), "blue": ("dave", "erin")},
                    lines_each=5, flood_room="green", fast=("fred", "gina"), slow="slowpoke",
                    line_bytes=16 * 1024, max_queue=64, leaver="bob", quitter="carol",
                    stayer="alice")
    rng = random.Random(DEFAULT_SEED if seed is None else seed)
    names = ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ida", "jon", "kim", "lou"]
    rng.shuffle(names)
    room_a, room_b, flood = rng.sample(["lobby", "kitchen", "garden", "attic", "cellar", "porch"], 3)
    first = tuple(names[:rng.randint(3, 4)])
    second = tuple(names[len(first):len(first) + rng.randint(2, 3)])
    rest = names[len(first) + len(second):]
    leaver, quitter, stayer = rng.sample(first, 3)
    return Plan(rooms={room_a: first, room_b: second}, lines_each=rng.randint(3, 8),
                flood_room=flood, fast=(rest[0], rest[1]), slow=rest[2],
                line_bytes=rng.choice([8, 16]) * 1024, max_queue=rng.randint(32, 64),
                leaver=leaver, quitter=quitter, stayer=stayer)


# -- the scripted clients -----------------------------------------------------------------------
class Gone(Exception):
    """The server closed this client's connection (end of stream or reset)."""


class Peer:
    """One scripted client: its connection, and every line it has read so far."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.name, self.reader, self.writer = name, reader, writer
        self.got: list[str] = []
        self.gone = False

    async def say(self, text: str) -> None:
        """Send one line; if the server has closed this connection, note it and go on."""
        try:
            self.writer.write(text.encode() + b"\n")
            await self.writer.drain()
        except ConnectionError:
            self.gone = True

    async def next_line(self, timeout_s: float) -> str:
        """The next line (without its newline); ``Gone`` at the end of the stream."""
        async with asyncio.timeout(timeout_s):
            try:
                raw = await self.reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
                self.gone = True
                raise Gone(str(exc)) from None
        if not raw.endswith(b"\n"):
            self.gone = True
            raise Gone("end of stream")
        line = raw[:-1].decode(errors="replace")
        self.got.append(line)
        return line

    async def read_until(self, wanted: str, timeout_s: float) -> bool:
        """Read until the line ``wanted`` (True), or stop at a silence of ``timeout_s`` (False)."""
        try:
            while await self.next_line(timeout_s) != wanted:
                pass
            return True
        except (TimeoutError, Gone):
            return False

    async def sees_the_end(self, timeout_s: float) -> bool:
        """Read (and drop) until the end of the stream: True if it comes within the silence bound."""
        try:
            while True:
                await self.next_line(timeout_s)
        except Gone:
            return True
        except TimeoutError:
            return False

    def reset(self) -> None:
        """Vanish abruptly: close with SO_LINGER 0, which sends a TCP reset."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self.gone = True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STEP_S):
                await self.writer.wait_closed()


async def connect(name: str, port: int, small_buffer: bool = False) -> Peer:
    if small_buffer:  # a tiny receive window: the server's writes to it pile up sooner
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock)
    else:
        reader, writer = await asyncio.open_connection(HOST, port)
    return Peer(name, reader, writer)


async def join(peer: Peer, room: str) -> bool:
    await peer.say(f"JOIN {room}")
    return await peer.read_until(f"OK {room}", STEP_S)


def named(coro: Any, name: str) -> asyncio.Task:
    return asyncio.create_task(coro, name=f"{CHECK_PREFIX} {name}")


def server_tasks(serving: asyncio.Task) -> set[asyncio.Task]:
    """The tasks that are not the check's own, nor serve_chat itself: the server's."""
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if not t.done() and t is not serving and t is not me
            and not t.get_name().startswith(CHECK_PREFIX)}


# -- what happened ------------------------------------------------------------------------------
@dataclass
class Story:
    """What the check saw, scene by scene; ``None`` where a scene was not reached."""

    port: int | None = None
    ended_early: BaseException | None = None  # serve_chat ended (or raised) before shutdown
    serial: tuple[str, str] | None = None  # (who was connected, whose JOIN got no answer)
    first_join_failed: str | None = None
    # rooms scene
    heard: dict[str, list[str]] = field(default_factory=dict)  # who -> lines of others it read
    settled: dict[str, bool] = field(default_factory=dict)  # who -> its sentinel came back
    # slow-client scene
    flood_lines: int = 0  # lines in the flood
    flood_got: int | None = None  # lines the fast listener read
    slow_cut_off: bool | None = None
    slow_got: list[str] = field(default_factory=list)
    # leaving scene
    stayer_alive_before: bool | None = None
    after_leave_delivered: bool | None = None
    stayer_alive: bool | None = None
    quitter_saw_end: bool | None = None
    leftover_after_leave: int | None = None  # tasks of departed clients still running
    per_client: int | None = None
    # shutdown scene
    shutdown_ended: bool | None = None
    shutdown_error: BaseException | None = None
    still_open: list[str] = field(default_factory=list)
    tasks_left: list[str] = field(default_factory=list)
    still_listening: bool | None = None


async def settle_tasks(serving: asyncio.Task, target: int) -> int:
    """Wait (boundedly) until the server has at most ``target`` tasks; return how many it has."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_S
    while len(server_tasks(serving)) > target and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return len(server_tasks(serving))


async def play(fn: Any, p: Plan, story: Story) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    try:
        coro = fn(HOST, 0, ready=ready, max_queue=p.max_queue)
    except TypeError as exc:  # a signature of its own: raised by the call itself
        story.ended_early = exc
        return
    serving = asyncio.create_task(coro, name="serve_chat")
    peers: dict[str, Peer] = {}
    try:
        waiting = named(asyncio.wait({ready, serving}, timeout=STALL_S,
                                     return_when=asyncio.FIRST_COMPLETED), "wait for ready")
        await waiting
        if serving.done():
            story.ended_early = serving.exception() if not serving.cancelled() else None
            if story.ended_early is None:
                story.ended_early = RuntimeError("serve_chat returned before it was stopped")
            return
        if not ready.done():
            return
        story.port = ready.result()
        baseline = len(server_tasks(serving))

        # 1. Rooms: members join one after the other, each while the earlier ones stay connected.
        for room, members in p.rooms.items():
            for who in members:
                peers[who] = await connect(who, story.port)
                if not await join(peers[who], room):
                    earlier = [w for w in peers if w != who]
                    if earlier and await join_later_works(peers[who], room, peers, earlier):
                        story.serial = (earlier[0], who)
                    else:
                        story.first_join_failed = who
                    return
        if serving.done():
            return
        story.per_client = await per_client_tasks(serving, baseline, len(peers))

        async def talk(peer: Peer) -> None:
            for i in range(1, p.lines_each + 1):
                await peer.say(f"{peer.name} says {i}")
            await peer.say(f"{peer.name} done")

        async def listen(peer: Peer) -> None:
            others = [w for w in p.rooms[p.room_of(peer.name)] if w != peer.name]
            pending = {f"{w} done" for w in others}
            try:
                while pending:
                    pending.discard(await peer.next_line(STALL_S))
            except (TimeoutError, Gone):
                pass

        async with asyncio.TaskGroup() as tg:
            for who, peer in peers.items():
                tg.create_task(talk(peer), name=f"{CHECK_PREFIX} {who} talks")
                tg.create_task(listen(peer), name=f"{CHECK_PREFIX} {who} listens")
        # Every line has now reached the server (each sender's "done" came last, and was
        # delivered). A JOIN of one's own room is answered through the same connection after
        # whatever the server had queued for it before: all the lines it will ever get.
        for who, peer in peers.items():
            story.settled[who] = await join(peer, p.room_of(who))
            story.heard[who] = [line for line in peer.got if not line.startswith("OK ")]

        # 2. A slow client in a room of its own, and a flood.
        await slow_scene(p, story, peers)

        # 3. Leaving: a reset and a QUIT; the stayer talks on.
        if story.per_client is not None:
            before = len(server_tasks(serving))
        leaver, quitter, stayer = peers[p.leaver], peers[p.quitter], peers[p.stayer]
        story.stayer_alive_before = await join(stayer, p.room_of(p.stayer))
        leaver.reset()
        await asyncio.sleep(0.05)  # let the server see the reset (it may see it later: fine too)
        await stayer.say(f"{p.stayer} after the reset")
        story.after_leave_delivered = await quitter.read_until(f"{p.stayer} after the reset",
                                                               STEP_S)
        await quitter.say("QUIT")
        story.quitter_saw_end = await quitter.sees_the_end(STEP_S)
        await stayer.say(f"{p.stayer} alone")
        story.stayer_alive = await join(stayer, p.room_of(p.stayer))
        if story.per_client is not None:
            target = before - 2 * story.per_client
            story.leftover_after_leave = max(0, await settle_tasks(serving, target) - target)

        # 4. Shutdown, with clients still connected.
        connected = [peer for peer in peers.values() if not peer.gone]
        serving.cancel()
        done, _ = await asyncio.wait({serving}, timeout=STALL_S)
        story.shutdown_ended = bool(done)
        if done and not serving.cancelled() and serving.exception() is not None:
            story.shutdown_error = serving.exception()
        ends = await asyncio.gather(*(named(peer.sees_the_end(STEP_S), f"{peer.name} waits")
                                      for peer in connected))
        story.still_open = [peer.name for peer, ended in zip(connected, ends) if not ended]
        await settle_tasks(serving, 0)
        story.tasks_left = sorted(describe_task(t) for t in server_tasks(serving))
        try:
            async with asyncio.timeout(STEP_S):
                late = await connect("late", story.port)
            story.still_listening = True
            await late.close()
        except (OSError, TimeoutError):
            story.still_listening = False
    finally:
        for peer in peers.values():
            peer.writer.transport.abort()
        if not serving.done():
            serving.cancel()
            await asyncio.wait({serving}, timeout=STEP_S)
        leftovers = server_tasks(serving) | ({serving} if not serving.done() else set())
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=STEP_S)


async def join_later_works(peer: Peer, room: str, peers: dict[str, Peer], earlier: list[str]) -> bool:
    """Does the JOIN get its answer once the earlier clients hang up? (A serial server.)"""
    for who in earlier:
        await peers[who].close()
        peers[who].gone = True
    return await peer.read_until(f"OK {room}", STALL_S)


async def per_client_tasks(serving: asyncio.Task, baseline: int, clients: int) -> int | None:
    await asyncio.sleep(0.05)  # let every task a connection starts get going
    extra = len(server_tasks(serving)) - baseline
    return extra // clients if extra > 0 and extra % clients == 0 else None


async def loopback_capacity() -> int:
    """How many bytes a connection to a client that reads nothing (with the slow client's tiny
    receive buffer) takes before ``drain()`` waits: the kernel's buffers plus the writer's 64 KiB.
    It differs from one system to another, so the check measures it on a connection of its own."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future = loop.create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not accepted.done():
            accepted.set_result(writer)

    server = await asyncio.start_server(on_connect, HOST, 0)
    sent = 0
    async with server:
        probe = await connect("probe", server.sockets[0].getsockname()[1], small_buffer=True)
        writer = await asyncio.wait_for(accepted, STEP_S)
        chunk = b"x" * 65536
        try:
            while sent < PROBE_LIMIT:
                writer.write(chunk)
                sent += len(chunk)
                async with asyncio.timeout(0.05):
                    await writer.drain()
        except TimeoutError:
            pass
        writer.transport.abort()
        probe.writer.transport.abort()
    return sent


async def slow_scene(p: Plan, story: Story, peers: dict[str, Peer]) -> None:
    flood_lines = p.flood_lines(await loopback_capacity())
    story.flood_lines = flood_lines
    flooder, listener = p.fast
    for who in (flooder, listener):
        peers[who] = await connect(who, story.port)
        await join(peers[who], p.flood_room)
    slow = await connect(p.slow, story.port, small_buffer=True)
    peers[p.slow] = slow
    await join(slow, p.flood_room)
    filler = "x" * (p.line_bytes - 40)

    progress = asyncio.Condition()
    got = 0

    async def flood() -> None:
        # A fast client keeps up: the flooder stays at most WINDOW lines ahead of the listener,
        # so the listener's backlog in the server never nears max_queue. The slow client's does.
        for i in range(flood_lines):
            async with progress:
                await progress.wait_for(lambda: got >= i - WINDOW)
            await peers[flooder].say(f"{flooder} {i:06d} {filler}")

    sending = named(flood(), "flood")
    try:
        while got < flood_lines:
            line = await peers[listener].next_line(STALL_S)
            if line.startswith(f"{flooder} "):
                async with progress:
                    got += 1
                    progress.notify_all()
    except (TimeoutError, Gone):
        pass
    peers[listener].got.clear()  # megabytes: keep only the count
    story.flood_got = got
    if got < flood_lines:  # the server waited for the slow client: that is the verdict
        sending.cancel()
        await asyncio.wait({sending}, timeout=STEP_S)
        slow.reset()  # unblock the server for the next scenes
        return
    await asyncio.wait({sending}, timeout=STEP_S)  # it has sent its last line already
    # Now the slow client reads: the server must have cut it off (its queue overflowed).
    seen = 0
    try:
        while True:
            line = await slow.next_line(STALL_S)
            if line.startswith(f"{flooder} "):
                seen += 1
                story.slow_got.append(line.split(" ")[1])
            if seen >= flood_lines:  # it got every line: nothing was ever dropped
                story.slow_cut_off = False
                return
    except Gone:
        story.slow_cut_off = True
    except TimeoutError:
        story.slow_cut_off = False
    finally:
        slow.gone = True


def describe_task(task: asyncio.Task) -> str:
    """``send_queued()``: the coroutine a task runs (under the timeline's thin wrapper, if any)."""
    coro = task_coroutine(task)
    return f"{getattr(coro, '__name__', None) or task.get_name()}()"


# -- running it on a real loop, in a thread of its own --------------------------------------------
@dataclass
class RealRun:
    story: Story
    error: BaseException | None = None
    hung: bool = False
    blocking_calls: list[BlockingCall] = field(default_factory=list)
    never_awaited: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    timeline: Timeline | None = None


def run_real(fn: Any, p: Plan) -> RealRun:
    """Play the scenes against ``fn`` on a new event loop in a worker thread."""
    run = RealRun(Story())
    namespaces = (getattr(fn, "__globals__", {}),)

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if exc is not None and not isinstance(exc, (ConnectionError, asyncio.CancelledError)):
            run.crashes.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(on_error)
        with trace() as timeline:
            run.timeline = timeline
            await play(fn, p, run.story)
        gc.collect()  # "Task exception was never retrieved" for crashed tasks, now

    loop = asyncio.new_event_loop()

    def target() -> None:
        detector = BlockingDetector(loop_thread=threading.current_thread(), namespaces=namespaces)
        detector.start()
        try:
            loop.run_until_complete(main())
        except _Abandoned:
            pass
        except BaseException as exc:  # a bug of the learner's that escaped: report it
            if not run.hung:
                run.error = exc
        finally:
            detector.stop()
            run.blocking_calls = list(detector.calls)
        if run.hung:
            # Keep the frozen run's tasks (and loop) referenced for good: collected, their
            # coroutines would run their `finally:` blocks on a closed loop, in whatever thread
            # happens to collect them.
            _ABANDONED.append((loop, asyncio.all_tasks(loop)))
            return
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        worker = threading.Thread(target=target, name="asynclab-chat-check", daemon=True)
        worker.start()
        worker.join(WALL_LIMIT_S)
        if worker.is_alive():
            run.hung = True
            stop_worker(worker, loop)
        gc.collect()
    run.never_awaited = sorted({str(w.message) for w in caught
                                if "was never awaited" in str(w.message)})
    if run.timeline is not None:
        if run.timeline.t1 is None:
            run.timeline.t1 = run.timeline.clock()
        keep_server_rows(run.timeline)
    return run


_ABANDONED: list[Any] = []  # the tasks of frozen runs (see run_real): a small, deliberate leak


class _Abandoned(BaseException):
    """Raised inside the check's worker thread when the learner's code froze its loop."""


def stop_worker(worker: threading.Thread, loop: asyncio.AbstractEventLoop) -> None:
    """Stop a run that froze, so that it does not burn CPU in the background for ever: stop the
    loop if it still turns, else raise ``_Abandoned`` in the thread's Python code."""
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        loop.call_soon_threadsafe(loop.stop)
    worker.join(0.5)
    if worker.is_alive() and worker.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident),
                                                   ctypes.py_object(_Abandoned))
        worker.join(0.5)


def keep_server_rows(timeline: Timeline) -> None:
    """Keep the rows of the learner's tasks: not the check's clients, not asyncio's own helpers
    (``BaseSelectorEventLoop._accept_connection2`` and the like)."""
    names = timeline.names()
    timeline.records[:] = [record for record, name in zip(timeline.records, names)
                           if not name.startswith(CHECK_PREFIX) and "." not in name]


# -- the verdict ---------------------------------------------------------------------------------
def check_serve_chat(fn: Any, *, variant: str = "public", seed: int | None = None) -> Report:
    """Judge ``serve_chat(host, port, *, ready, max_queue)`` (see the module docstring)."""
    report = Report(EXERCISE)
    bad = require_coroutine_function(EXERCISE, fn)
    if bad:
        report.findings.append(bad)
        return report
    p = plan(variant, seed)
    run = run_real(fn, p)
    report.timeline = run.timeline
    s = run.story

    def add_common() -> None:
        if run.never_awaited:
            report.add("every coroutine awaited", False,
                       f"{len(run.never_awaited)} coroutine(s) were created but never awaited, so "
                       f"they never ran: {run.never_awaited[0]}",
                       "Calling a coroutine function (`writer.drain()`, `writer.wait_closed()`) "
                       "only creates a coroutine object; put `await` in front of it.")
        if run.blocking_calls:
            first = run.blocking_calls[0]
            more = f" (and {len(run.blocking_calls) - 1} more)" if len(run.blocking_calls) > 1 else ""
            report.add("never blocks the event loop", False,
                       f"blocking call on the event loop: {first.where()}{more}",
                       "A blocking call stops every connection at once. Use "
                       "`await asyncio.sleep(...)`, never time.sleep, in a coroutine.")
        if run.crashes:
            report.add("no task crashed", False,
                       f"{len(run.crashes)} task(s) of the server ended with an error nobody "
                       f"handled, e.g. {run.crashes[0]}",
                       "Read the error: a handler that crashes leaves its client connected to "
                       "nothing. Catch what a connection can raise, and clean up in `finally:`.")

    if run.hung:
        report.add("never freezes the event loop", False,
                   f"the check's clients got nothing more for {WALL_LIMIT_S:g} s of real time: "
                   "the server's loop was stuck (a loop that never awaits, or a call that blocks)",
                   "Every loop in a coroutine must reach an `await` (readline, drain, queue.get, "
                   "asyncio.sleep); a `while True:` that only computes freezes every connection.")
        add_common()
        return report
    if run.error is not None:
        report.add("runs without error", False, f"the check's run failed: {describe_error(run.error)}",
                   "Run your server by hand with two clients to see where it fails.")
        add_common()
        return report
    if isinstance(s.ended_early, NotImplementedError):
        report.add("written", False, "serve_chat is not written yet (it raised NotImplementedError).",
                   "Replace the `raise NotImplementedError` line in the answer cell with your code, "
                   "run that cell, then run this check again.")
        return report
    if isinstance(s.ended_early, TypeError) and "argument" in str(s.ended_early):
        report.add("takes the exercise's arguments", False,
                   f"serve_chat(host, port, ready=..., max_queue=...) raised "
                   f"{describe_error(s.ended_early)}",
                   "Keep the signature of the answer cell: "
                   "`async def serve_chat(host, port, *, ready, max_queue=100)`.")
        return report
    if s.ended_early is not None:
        report.add("keeps serving", False,
                   f"serve_chat ended before it was stopped: {describe_error(s.ended_early)}",
                   "serve_chat serves until it is cancelled: end it with "
                   "`await server.serve_forever()` (or wait on something that never comes).")
        add_common()
        return report
    if s.port is None:
        report.add("announces its port", False,
                   f"`ready` got no port within {STALL_S:g} s of starting serve_chat",
                   "Once the server listens, call `ready.set_result(port)` with the port it got: "
                   "`server.sockets[0].getsockname()[1]` (port 0 lets the system choose).")
        add_common()
        return report
    report.add("announces its port", True, f"`ready` got the port the server listens on ({HOST})")

    if s.serial is not None:
        first, second = s.serial
        report.add("serves clients at the same time", False,
                   f"{second}'s JOIN got no answer while {first} was connected, and got it once "
                   f"{first} hung up: the server serves one client at a time",
                   "start_server already runs each connection in a task of its own; do not hold "
                   "a lock (or loop over clients) across a wait on one client's lines.")
        add_common()
        return report
    if s.first_join_failed is not None:
        report.add("answers JOIN", False,
                   f"{s.first_join_failed} sent `JOIN {p.room_of(s.first_join_failed)}` and got no "
                   f"`OK {p.room_of(s.first_join_failed)}` line within {STEP_S:g} s",
                   "Answer each `JOIN room` with the line `OK room` to that client (and drain).")
        add_common()
        return report
    members = len(p.everyone())
    report.add("serves clients at the same time", True,
               f"{members} clients joined two rooms one after another, each answered at once")

    # Rooms: what each member heard.
    echo, stray, missing, disorder = [], [], [], []
    for who in p.everyone():
        heard = s.heard.get(who, [])
        room = p.room_of(who)
        others = [w for w in p.rooms[room] if w != who]
        outsiders = [w for w in p.everyone() if w not in p.rooms[room]]
        if any(line.startswith(f"{who} ") for line in heard):
            echo.append(who)
        for line in heard:
            sender = line.split(" ")[0]
            if sender in outsiders:
                stray.append((who, line, p.room_of(sender)))
                break
        for other in others:
            said = [line for line in heard if line.startswith(f"{other} says ")]
            expected = [f"{other} says {i}" for i in range(1, p.lines_each + 1)]
            if sorted(said) != sorted(expected) or f"{other} done" not in heard:
                missing.append((who, other, len(said)))
            elif said != expected:
                disorder.append((who, other, said))
    report.add("delivers to the room only", not stray,
               f"each line reached only the members of its sender's room" if not stray else
               f"{stray[0][0]} (in {p.room_of(stray[0][0])}) received `{stray[0][1]}`, said in "
               f"{stray[0][2]}",
               "Send a line only to the members of the sender's room: keep a dict room -> set "
               "of clients, and loop over that set, not over every client.")
    report.add("no echo to the sender", not echo,
               "nobody received their own lines" if not echo else
               f"{echo[0]} received its own lines back",
               "Skip the sender when you pass a line on to its room.")
    report.add("every line delivered", not missing,
               f"each of the {members} clients got all {p.lines_each} lines of every other member "
               f"of its room" if not missing else
               f"{missing[0][0]} got {missing[0][2]} of {missing[0][1]}'s {p.lines_each} lines "
               f"(or not its last one)",
               "Each line goes to every other member of the room: put it in each one's queue.")
    report.add("in order per sender", not disorder,
               "each sender's lines arrived in the order they were said" if not disorder else
               f"{disorder[0][0]} got {disorder[0][1]}'s lines in this order: "
               f"{', '.join(x.split()[-1] for x in disorder[0][2])}",
               "Keep one FIFO queue (and one writer task) per client, so that its lines leave in "
               "the order they came.")

    # The slow client.
    if s.flood_got is not None:
        fast_ok = s.flood_got >= s.flood_lines
        report.add("a slow client does not stall the others", fast_ok,
                   f"{p.fast[1]} got every line of {p.fast[0]}'s flood (8 MiB or more) "
                   f"while {p.slow} read nothing" if fast_ok else
                   f"{p.fast[1]} got {s.flood_got} of {s.flood_lines} lines from {p.fast[0]}, then "
                   f"nothing for {STALL_S:g} s, while {p.slow} (in the same room) read nothing: "
                   "the server waited for the slow client before serving the others",
                   "Never `await drain()` of another client in the sender's task. Give each "
                   "client a bounded asyncio.Queue and a writer task of its own that does "
                   "`write` + `await drain()`; the sender only does `put_nowait`.")
        if fast_ok:
            cut = bool(s.slow_cut_off)
            in_order = s.slow_got == sorted(s.slow_got)
            report.add("a client that cannot keep up is cut off", cut and in_order,
                       f"{p.slow} got the first lines, in order, then the server closed its "
                       f"connection (its queue of {p.max_queue} lines was full)"
                       if cut and in_order else
                       f"{p.slow} got the flood's lines out of order" if cut else
                       f"{p.slow} was never cut off: it got all {len(s.slow_got)} lines once it "
                       "read, so they were kept for it without limit (an unbounded queue, or "
                       "writes that never wait for drain())",
                       "Bound each client's queue: asyncio.Queue(max_queue). When `put_nowait` "
                       "raises QueueFull, that client is too slow: close its connection and drop "
                       "it from its room. Its writer task must `await writer.drain()`.")

    # Leaving.
    if s.stayer_alive is not None:
        ok = bool(s.after_leave_delivered) and bool(s.stayer_alive)
        report.add("survives a client that vanishes", ok,
                   f"after {p.leaver} vanished (a reset), {p.stayer}'s lines still reached "
                   f"{p.quitter}, and {p.stayer}'s connection kept working" if ok else
                   f"{p.stayer}'s connection was already closed by the server before {p.leaver} "
                   "vanished (its JOIN got no answer)" if not s.stayer_alive_before else
                   f"after {p.leaver} vanished (a reset), {p.stayer}'s connection stopped "
                   "working: an error from writing to the dead connection ended "
                   f"{p.stayer}'s handler" if not s.stayer_alive else
                   f"after {p.leaver} vanished (a reset), {p.stayer}'s next line did not reach "
                   f"{p.quitter}",
                   "A write to a connection that is gone raises ConnectionError in the task "
                   "that awaits drain(): let each client's own writer task do that, catch it "
                   "there, and remove the client in a `finally:` of its handler.")
        report.add("QUIT closes the connection", bool(s.quitter_saw_end),
                   f"{p.quitter} sent QUIT and saw the end of the stream" if s.quitter_saw_end else
                   f"{p.quitter} sent QUIT and its connection stayed open for {STEP_S:g} s",
                   "On `QUIT`, leave the read loop; the handler's `finally:` closes the writer.")
        if s.leftover_after_leave is not None:
            report.add("cleans up after a client leaves", s.leftover_after_leave == 0,
                       f"the tasks of {p.leaver} and {p.quitter} ended when they left"
                       if s.leftover_after_leave == 0 else
                       f"{s.leftover_after_leave} task(s) of {p.leaver} and {p.quitter} were still "
                       f"running {STEP_S:g} s after they left",
                       "When a handler ends (EOF, QUIT, an error), its `finally:` cancels the "
                       "client's writer task, removes it from its room and closes the writer.")

    # Shutdown.
    if s.shutdown_ended is not None:
        if not s.shutdown_ended:
            report.add("shuts down when cancelled", False,
                       f"serve_chat was still running {STALL_S:g} s after it was cancelled",
                       "From Python 3.12, `async with server` (and server.wait_closed()) wait "
                       "until every connection is closed: on cancellation, cancel the handlers' "
                       "tasks (or close their writers) first, then let the server close.")
        else:
            clean = not s.still_open and not s.tasks_left and not s.still_listening
            report.add("shuts down when cancelled", clean,
                       "cancelled, it closed every connection, stopped listening and left no "
                       "task running" if clean else
                       f"after it was cancelled, {len(s.still_open)} connection(s) stayed open "
                       f"({', '.join(s.still_open)})" if s.still_open else
                       f"after it was cancelled, task(s) were left running: "
                       f"{', '.join(s.tasks_left)}" if s.tasks_left else
                       "after it was cancelled, the port still accepted connections",
                       "On cancellation (a `finally:` around `await server.serve_forever()`): "
                       "cancel every connection's tasks, wait for them, and close the server "
                       "(`async with server` does that last part).")
    add_common()
    if s.shutdown_ended is None and report.passed:  # a scene was cut short: never a pass
        report.add("plays every scene", False,
                   "the check could not play all its scenes against this server",
                   "Run your server by hand with a few clients: JOIN, talk, QUIT.")
    return report


EXERCISES = {EXERCISE: check_serve_chat}
