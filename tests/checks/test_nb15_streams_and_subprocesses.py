"""The serve_chat check passes the reference and rejects what learners really write.

Each run uses real sockets on 127.0.0.1 and the real clock; a correct server takes well under a
second, and a wrong one at most a few seconds (the check's waits only run out when it is stuck).
"""

from __future__ import annotations

import pytest

from asynclab.checks import check
from asynclab.checks.nb15_streams_and_subprocesses import (FLOOD_BYTES, WINDOW, check_serve_chat,
                                                           plan)
from conftest import define, failed_props

NAME = "serve_chat"

REFERENCE = '''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
'''

STUB = '''
async def serve_chat(host, port, *, ready, max_queue=100):
    raise NotImplementedError
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    'one client at a time': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    one_at_a_time = asyncio.Lock()

    async def handle(reader, writer):
        async with one_at_a_time:  # "simpler": one conversation at a time
            await serve_one(reader, writer)

    async def serve_one(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'serves clients at the same time', 'serves one client at a time'),
    'broadcast to every room': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in [c for members in rooms.values() for c in members]:
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'delivers to the room only', 'received `dave says 1`, said in blue'),
    'echo to the sender': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'no echo to the sender', 'received its own lines back'),
    'drain of the slow client awaited inline': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}
    connections = {}  # writer -> the task serving that connection

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        room = None
        try:
            while line := await reader.readline():
                text = line.decode().strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room:
                        rooms[room].discard(writer)
                    room = text[5:]
                    rooms.setdefault(room, set()).add(writer)
                    writer.write(f"OK {room}\\n".encode())
                    await writer.drain()
                elif room:
                    for other in rooms[room] - {writer}:
                        other.write(line)
                        await other.drain()  # waits for the slowest member
        except ConnectionError:
            pass
        finally:
            if room:
                rooms[room].discard(writer)
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'a slow client does not stall the others', 'the server waited for the slow client'),
    'unbounded queue': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue()
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'a client that cannot keep up is cut off', 'was never cut off'),
    'forgotten await on drain()': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                writer.drain()
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'every coroutine awaited', "'StreamWriter.drain' was never awaited"),
    'time.sleep in the handler': ('''
import asyncio
import time


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                time.sleep(0.01)  # "let the others catch up"
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'never blocks the event loop', 'time.sleep(0.01) in handle()'),
    'no drain() at all': (REFERENCE.replace(
        "                await writer.drain()  # waits for this client only\n", ""),
        "a client that cannot keep up is cut off", "writes that never wait for drain()"),
    'no cleanup when a client vanishes': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}
    connections = {}  # writer -> the task serving that connection

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        room = None
        while line := await reader.readline():  # a reset raises here: nothing cleans up
            text = line.decode().strip()
            if text == "QUIT":
                break
            if text.startswith("JOIN "):
                if room:
                    rooms[room].discard(writer)
                room = text[5:]
                rooms.setdefault(room, set()).add(writer)
                writer.write(f"OK {room}\\n".encode())
                await writer.drain()
            elif room:
                for other in list(rooms[room]):
                    if other is not writer:
                        other.write(line)
                        await other.drain()
        rooms[room].discard(writer)
        writer.close()
        del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'survives a client that vanishes', "ended alice's handler"),
    'writer task never cancelled': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'cleans up after a client leaves', '2 task(s) of bob and carol'),
    'connections left open on shutdown': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        await server.serve_forever()
''', 'shuts down when cancelled', ''),
    'never announces its port': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'announces its port', 'got no port'),
    'returns instead of serving': ('''
import asyncio


async def serve_chat(host, port, *, ready, max_queue=100):
    rooms = {}  # room name -> the clients in it (each client: its queue and its writer)
    connections = {}  # writer -> the task serving that connection

    async def send_queued(queue, writer):
        """This client's writer task: its lines, in order, at its own pace."""
        try:
            while True:
                line = await queue.get()
                writer.write(line)
                await writer.drain()  # waits for this client only
        except ConnectionError:
            pass  # the client is gone: its handler cleans up

    async def handle(reader, writer):
        connections[writer] = asyncio.current_task()
        queue = asyncio.Queue(max_queue)
        me = (queue, writer)
        sender = asyncio.create_task(send_queued(queue, writer))
        room = None
        try:
            while line := await reader.readline():  # b"": the client left, or we closed
                text = line.decode(errors="replace").strip()
                if text == "QUIT":
                    break
                if text.startswith("JOIN "):
                    if room is not None:
                        rooms[room].discard(me)
                    room = text.removeprefix("JOIN ").strip()
                    rooms.setdefault(room, set()).add(me)
                    queue.put_nowait(f"OK {room}\\n".encode())
                elif room is not None:
                    for other in list(rooms[room]):
                        if other is me:
                            continue  # no echo
                        try:
                            other[0].put_nowait(line)  # never waits
                        except asyncio.QueueFull:  # too slow: cut it off
                            rooms[room].discard(other)
                            other[1].transport.abort()
        except ConnectionError:
            pass  # vanished: clean up below
        finally:
            if room is not None:
                rooms[room].discard(me)
            sender.cancel()
            writer.close()
            del connections[writer]

    server = await asyncio.start_server(handle, host, port)
    async with server:  # on the way out: stop listening, wait until closed
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            pass
        finally:
            handlers = list(connections.values())
            for writer in list(connections):
                writer.close()  # its handler reads b"" and cleans up
            await asyncio.gather(*handlers, return_exceptions=True)
''', 'keeps serving', 'ended before it was stopped'),
}


def test_reference_passes():
    report = check_serve_chat(define(REFERENCE, NAME))
    assert report.passed, report.text()
    props = {f.prop for f in report.findings}
    assert {"a slow client does not stall the others", "a client that cannot keep up is cut off",
            "survives a client that vanishes", "shuts down when cancelled"} <= props


@pytest.mark.parametrize("seed", [1, 1234])
def test_reference_passes_hidden_plans(seed):
    report = check_serve_chat(define(REFERENCE, NAME), variant="hidden", seed=seed)
    assert report.passed, report.text()


def test_check_finds_the_exercise_by_name_and_prints_the_same_text_every_run():
    first = check_serve_chat(define(REFERENCE, NAME)).text()
    assert check(define(REFERENCE, NAME)).text() == first


def test_stub_is_not_written_yet():
    report = check_serve_chat(define(STUB, NAME))
    assert not report.passed
    assert "not written yet" in failed_props(report)["written"]


def test_a_server_without_max_queue_is_told_the_signature():
    code = REFERENCE.replace("*, ready, max_queue=100):", "*, ready):").replace(
        "asyncio.Queue(max_queue)", "asyncio.Queue(100)")
    report = check_serve_chat(define(code, NAME))
    assert "max_queue" in failed_props(report)["takes the exercise's arguments"], report.text()


def test_a_plain_function_is_rejected():
    report = check_serve_chat(lambda host, port, **kw: None)
    assert failed_props(report).keys() == {"is a coroutine function"}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_solution_is_rejected_with_its_diagnosis(name):
    code, prop, fragment = WRONG[name]
    assert code != REFERENCE
    report = check_serve_chat(define(code, NAME))
    failed = failed_props(report)
    assert prop in failed, report.text()
    assert fragment in failed[prop], report.text()


@pytest.mark.parametrize("seed", range(30))
def test_hidden_plans_are_meaningful_for_any_seed(seed):
    p = plan("hidden", seed)
    first_room = p.room_of(p.stayer)
    assert len({p.leaver, p.quitter, p.stayer}) == 3
    assert {p.leaver, p.quitter} <= set(p.rooms[first_room])
    assert all(len(members) >= 2 for members in p.rooms.values())
    everyone = p.everyone() + list(p.fast) + [p.slow]
    assert len(everyone) == len(set(everyone))
    # no burst to a client that reads can fill its queue; the flood overflows the slow one's
    biggest_room = max(len(m) for m in p.rooms.values())
    assert (biggest_room - 1) * (p.lines_each + 1) < p.max_queue and WINDOW + 1 < p.max_queue
    assert p.max_queue * p.line_bytes <= 1024 * 1024 and FLOOD_BYTES >= 8 * 1024 * 1024
    assert p.flood_lines(0) * p.line_bytes >= FLOOD_BYTES
    assert p.flood_lines(20 * 1024 * 1024) * p.line_bytes > 40 * 1024 * 1024  # a roomy loopback


FROZEN = REFERENCE.replace('''                if text == "QUIT":
                    break''', '''                if text == "QUIT":
                    while True:  # "wait" for the client to go, without ever awaiting
                        pass''')


def test_a_server_that_freezes_its_loop_is_stopped_and_diagnosed(monkeypatch):
    import asynclab.checks.nb15_streams_and_subprocesses as module

    assert FROZEN != REFERENCE
    monkeypatch.setattr(module, "WALL_LIMIT_S", 4.0)
    report = check_serve_chat(define(FROZEN, NAME))
    failed = failed_props(report)
    assert "never freezes the event loop" in failed, report.text()
    assert not report.passed
