"""Lesson 02 as a script: a forgotten `await`, and the fix.

Run it with:  python 02_forgotten_await.py
In development, run it with  python -X dev 02_forgotten_await.py  to see where the
forgotten coroutine was created.
"""

import asyncio

saved_orders = []


async def save_order(order):
    await asyncio.sleep(0.01)  # stands for a database round trip
    saved_orders.append(order)


async def checkout_broken(order):
    save_order(order)  # BUG: creates a coroutine object and drops it; nothing is saved
    return f"order {order['id']} confirmed"


async def checkout_fixed(order):
    await save_order(order)
    return f"order {order['id']} confirmed"


async def main():
    print(await checkout_broken({"id": 1}))
    print(await checkout_fixed({"id": 2}))
    print("saved orders:", [order["id"] for order in saved_orders])


if __name__ == "__main__":
    asyncio.run(main())
