"""Lesson 05 as a script: every open connection is a file descriptor, and a process has a limit.

It lowers its own limit to 256 descriptors (only for this process, so the failure shows up at
1,000 connections instead of tens of thousands), starts a small TCP server on 127.0.0.1, and opens
1,000 connections to it: first at most 50 at a time with a semaphore, then all at once.

Run it with:  python 05_too_many_connections.py

File-descriptor limits (the ``resource`` module) are POSIX: Linux and macOS. On Windows the
script says so and stops.
"""

import asyncio
import logging

try:
    import resource
except ImportError:  # Windows: no POSIX resource limits
    resource = None

LIMIT = 256  # file descriptors this process may hold
CONNECTIONS = 1000
MAX_IN_FLIGHT = 50


async def serve(reader, writer):
    await reader.read()  # wait until the client hangs up
    writer.close()


async def hold_connection(port, seconds):
    """Connect, keep the connection open for a while (a request in flight), hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.sleep(seconds)
    finally:
        writer.close()
        await writer.wait_closed()


def failures(results):
    return [r for r in results if isinstance(r, OSError)]


async def main():
    if resource is None:
        print("skipped: this demo lowers a POSIX file-descriptor limit (Linux, macOS); "
              "Windows has no such limit to lower")
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(LIMIT, soft), hard))
    # The server shares our limit; when it runs out, asyncio logs every refused accept.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=CONNECTIONS)
    port = server.sockets[0].getsockname()[1]
    print(f"limit for this process: {min(LIMIT, soft)} file descriptors")

    sem = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def bounded():
        async with sem:
            await hold_connection(port, 0.01)

    results = await asyncio.gather(*(bounded() for _ in range(CONNECTIONS)),
                                   return_exceptions=True)
    ok = CONNECTIONS - len(failures(results))
    print(f"Semaphore({MAX_IN_FLIGHT}): {ok} of {CONNECTIONS} connections succeeded")

    results = await asyncio.gather(*(hold_connection(port, 0.2) for _ in range(CONNECTIONS)),
                                   return_exceptions=True)
    failed = failures(results)
    reason = f"with {failed[0]}" if failed else ""
    print(f"all at once: {len(failed)} of {CONNECTIONS} connections failed {reason}")
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
