"""Lesson 09 as a script: what asyncio's debug mode tells you about two pitfalls.

Run it with:  python 09_debug_mode.py
`debug=True` below does what `python -X dev 09_debug_mode.py` or the environment variable
PYTHONASYNCIODEBUG=1 would do. Debug mode writes its reports to stderr.
"""

import asyncio
import time

saved_orders = []


async def save_order(order):
    await asyncio.sleep(0.01)  # stands for a database round trip
    saved_orders.append(order["id"])


def legacy_geocode(address):
    """An old synchronous client: it blocks its thread until the answer comes back."""
    time.sleep(0.3)
    return f"coordinates of {address}"


async def handle_request(order):
    save_order(order)  # BUG 1: never awaited, so the order is never saved
    return legacy_geocode(order["address"])  # BUG 2: blocks the event loop for 0.3 s


async def main():
    print(await handle_request({"id": 1, "address": "1 Main St"}))
    print("saved orders:", saved_orders)


if __name__ == "__main__":
    asyncio.run(main(), debug=True)
