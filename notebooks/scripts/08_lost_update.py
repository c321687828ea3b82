"""Lesson 08 as a script: a lost update across an await, and its two fixes.

    python 08_lost_update.py

Alice takes 70 and Bob takes 50 from an account that holds 100, at the same moment. Each
withdrawal reads the balance, checks it, waits for a (pretend) fraud check, then writes.

1. no protection: both read 100 before either writes; both are paid, one write is lost;
2. an asyncio.Lock per account, held across the await: Bob waits, then is refused;
3. no await between the check and the act: the money is reserved first, Bob is refused at once.
"""

import asyncio

APPROVAL_S = 0.2  # the fraud check's latency


class Account:
    def __init__(self, balance):
        self.balance = balance
        self.paid_out = 0
        self.lock = asyncio.Lock()


async def approve(amount):
    await asyncio.sleep(APPROVAL_S)


async def withdraw(account, amount):
    balance = account.balance  # check...
    if balance < amount:
        return False
    await approve(amount)  # ...await...
    account.balance = balance - amount  # ...act, on what was read before the await
    account.paid_out += amount
    return True


async def withdraw_locked(account, amount):
    async with account.lock:
        return await withdraw(account, amount)


async def withdraw_reserving(account, amount):
    if account.balance < amount:
        return False
    account.balance -= amount  # the check and the act, with no await in between
    try:
        await approve(amount)
    except BaseException:  # refused or cancelled: give the money back
        account.balance += amount
        raise
    account.paid_out += amount
    return True


async def two_withdrawals(withdraw_fn):
    account = Account(100)
    async with asyncio.TaskGroup() as tg:
        alice = tg.create_task(withdraw_fn(account, 70))
        bob = tg.create_task(withdraw_fn(account, 50))
    return alice.result(), bob.result(), account


async def main():
    for label, withdraw_fn in (("no protection", withdraw), ("a lock", withdraw_locked),
                               ("no await between check and act", withdraw_reserving)):
        alice, bob, account = await two_withdrawals(withdraw_fn)
        print(f"{label:31}: Alice {'paid' if alice else 'refused'}, Bob "
              f"{'paid' if bob else 'refused'}; paid out {account.paid_out}, "
              f"balance {account.balance}")


if __name__ == "__main__":
    asyncio.run(main())
