"""Lesson 19 as a script: a TCP server that shuts down gracefully on SIGTERM or SIGINT.

    python 19_graceful_shutdown.py          # a demo: it sends itself SIGTERM after 0.3 s
    python 19_graceful_shutdown.py --wait   # waits for a real signal: Ctrl-C, or kill -TERM <pid>

The server answers requests on 127.0.0.1. A few clients are talking to it when the signal
arrives. The shutdown sequence:

1. stop accepting: close the listening socket (a new client is refused);
2. drain: let the requests in flight finish, for at most DRAIN_TIMEOUT_S;
3. cancel the requests still running after that, and wait for them to unwind;
4. clean up (here: a pretend database pool), and exit with status 0.

A second signal during the drain skips the rest of it and cancels at once.
"""

import asyncio
import os
import signal
import sys

DRAIN_TIMEOUT_S = 1.0
# What each client asks for: seconds of work. The 10 s one will not finish in time.
REQUESTS = [0.5, 0.6, 10.0, 0.7]


async def serve_one(reader, writer):
    """Serve one request: read how long to work, work, answer."""
    try:
        seconds = float((await reader.readline()).decode())
        await asyncio.sleep(seconds)  # the work (a database query, say)
        writer.write(b"done\n")
        await writer.drain()
    finally:
        writer.close()  # also when cancelled: the client is not left hanging


def accept(reader, writer, in_flight):
    """Start serving a new connection in a task of our own, and keep track of it."""
    task = asyncio.create_task(serve_one(reader, writer))
    in_flight.add(task)
    task.add_done_callback(in_flight.discard)


def requests(n):
    return f"{n} request" + ("" if n == 1 else "s")


async def client(port, seconds):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{seconds}\n".encode())
    await writer.drain()
    answer = await reader.readline()
    writer.close()
    return answer.decode().strip() or "connection closed without an answer"


def install_signal_handlers(loop, stop):
    """SIGTERM and SIGINT set `stop`; a second one also sets `hurry` (no more draining)."""
    hurry = asyncio.Event()

    def on_signal(sig):
        print(f"{signal.Signals(sig).name} received", flush=True)
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except NotImplementedError:  # Windows: no add_signal_handler
            signal.signal(sig, lambda s, _: loop.call_soon_threadsafe(on_signal, s))
    return hurry


async def refused(port):
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def main():
    wait_for_real_signal = "--wait" in sys.argv
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hurry = install_signal_handlers(loop, stop)
    in_flight = set()
    server = await asyncio.start_server(lambda r, w: accept(r, w, in_flight), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [asyncio.create_task(client(port, s)) for s in REQUESTS]
    while len(in_flight) < len(REQUESTS):  # until every request has been accepted
        await asyncio.sleep(0.01)
    print(f"serving; {requests(len(in_flight))} in flight", flush=True)
    if not wait_for_real_signal:
        loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)

    await stop.wait()
    server.close()  # 1. stop accepting
    print(f"stopped accepting; a new connection is refused: {await refused(port)}")
    print(f"draining {requests(len(in_flight))}, for at most {DRAIN_TIMEOUT_S:g} s")
    all_done = asyncio.gather(*in_flight, return_exceptions=True)
    hurrying = asyncio.create_task(hurry.wait())
    await asyncio.wait([all_done, hurrying], timeout=DRAIN_TIMEOUT_S,  # 2. drain
                       return_when=asyncio.FIRST_COMPLETED)
    hurrying.cancel()
    stragglers = list(in_flight)
    for task in stragglers:  # 3. cancel what is left
        task.cancel()
    await asyncio.gather(*stragglers, return_exceptions=True)
    answers = await asyncio.gather(*clients)
    print(f"{requests(answers.count('done'))} finished in time; {len(stragglers)} cancelled")
    await server.wait_closed()
    print("cleanup: database pool closed; exiting with status 0")  # 4. clean up


if __name__ == "__main__":
    asyncio.run(main())
