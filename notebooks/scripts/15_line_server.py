"""Lesson 15 as a script: a line server and its client, then a child process read as it prints.

    python 15_line_server.py

1. a server on 127.0.0.1 (port 0: the system picks a free one) answers each line in capitals;
   a client sends two lines and reads the answers; both sides close cleanly;
2. a child process (this same Python) prints three lines, 50 ms apart; we read each one as it
   comes, then reap the child with wait().
"""

import asyncio
import sys

HOST = "127.0.0.1"
SLOW_PRINTER = """
import time
for i in range(1, 4):
    print(f"step {i} done", flush=True)
    time.sleep(0.05)
"""


async def shout(reader, writer):
    while line := await reader.readline():  # b"" when the client closes
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def talk(port):
    reader, writer = await asyncio.open_connection(HOST, port)
    for text in ("hello", "bye"):
        writer.write(text.encode() + b"\n")
        await writer.drain()
        print("server says:", (await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()


async def follow_child():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SLOW_PRINTER,
                                                stdout=asyncio.subprocess.PIPE)
    while line := await proc.stdout.readline():
        print("child says:", line.decode().strip())
    print("child exit code:", await proc.wait())


async def main():
    server = await asyncio.start_server(shout, HOST, 0)
    async with server:
        await talk(server.sockets[0].getsockname()[1])
    await follow_child()


if __name__ == "__main__":
    asyncio.run(main())
