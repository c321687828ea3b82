"""Checks for notebook 02_coroutines: a chain of awaits that passes results on and errors up."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field, replace
from typing import Any

from asynclab.checking import (Report, awaitable_name, basic_findings, describe_error, observe,
                               require_coroutine_function, varied)
from asynclab.timeline import traced

NOTEBOOK = "02_coroutines"
STEPS = ("reserve", "charge", "send_receipt")


class PaymentDeclined(Exception):
    """What ``Shop.charge`` raises for a declined card."""


@dataclass
class ShopCall:
    """One call to the fake shop: which step, with what, when, and how it ended."""

    step: str
    args: tuple[str, ...]
    start: float
    end: float | None = None
    outcome: str = "running"  # "ok", "error", "cancelled" or "running"
    bad_args: list[str] = field(default_factory=list)  # awaitables passed where values belong


class Shop:
    """A fake shop whose four steps take virtual time and record how they were used.

    ``reserve(order_id)`` returns ``"R-<order_id>"``; ``charge(order_id, reservation)``
    returns ``"P-<order_id>"``, or raises ``PaymentDeclined`` for the orders in
    ``declined``; ``send_receipt(order_id, payment)`` returns the receipt text;
    ``release(reservation)`` returns None.
    """

    def __init__(self, latency_s: dict[str, float] | None = None,
                 declined: frozenset[str] | set[str] = frozenset()) -> None:
        self.latency_s = {"reserve": 2.0, "charge": 3.0, "send_receipt": 1.0, "release": 1.0}
        self.latency_s.update(latency_s or {})
        self.declined = set(declined)
        self.calls: list[ShopCall] = []
        self.raised: list[PaymentDeclined] = []

    @staticmethod
    def receipt_for(order_id: str, payment: str) -> str:
        return f"receipt for {order_id}, paid by {payment}"

    async def _step(self, step: str, *args: Any, fail: bool = False) -> None:
        call = ShopCall(step, tuple(str(a) if not inspect.isawaitable(a) else "?" for a in args),
                        asyncio.get_running_loop().time())
        for arg in args:
            if inspect.isawaitable(arg):
                call.bad_args.append(awaitable_name(arg))
                if inspect.iscoroutine(arg):
                    arg.close()  # reported by the check; no second warning later
        self.calls.append(call)
        try:
            await asyncio.sleep(self.latency_s[step])
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        finally:
            call.end = asyncio.get_running_loop().time()
        if fail:
            call.outcome = "error"
            error = PaymentDeclined(f"card declined for order {args[0]}")
            self.raised.append(error)
            raise error
        call.outcome = "ok"

    def _traced_step(self, step: str, *args: Any, fail: bool = False) -> Any:
        # A row of its own on the timeline of a check (and of a learner's trace()).
        return traced(self._step(step, *args, fail=fail), name=f"shop.{step}")

    async def reserve(self, order_id: str) -> str:
        """Hold the stock for ``order_id``; returns a reservation id."""
        await self._traced_step("reserve", order_id)
        return f"R-{order_id}"

    async def charge(self, order_id: str, reservation: str) -> str:
        """Charge the customer; returns a payment id, or raises PaymentDeclined."""
        await self._traced_step("charge", order_id, reservation, fail=order_id in self.declined)
        return f"P-{order_id}"

    async def release(self, reservation: str) -> None:
        """Give the reserved stock back."""
        await self._traced_step("release", reservation)

    async def send_receipt(self, order_id: str, payment: str) -> str:
        """Email the receipt; returns its text."""
        await self._traced_step("send_receipt", order_id, payment)
        if inspect.isawaitable(payment):
            return self.receipt_for(order_id, "?")
        return self.receipt_for(order_id, payment)

    def steps(self) -> list[str]:
        return [c.step for c in self.calls]


@dataclass(frozen=True)
class Scenario:
    paid_order: str
    declined_order: str
    latency_s: dict[str, float]


def scenario(variant: str, seed: int | None = None) -> Scenario:
    if variant == "public":
        return Scenario("A-17", "B-99", {"reserve": 2.0, "charge": 3.0, "send_receipt": 1.0,
                                         "release": 1.0})
    return Scenario("K-3", "Z-8", {"reserve": 0.5, "charge": 4.5, "send_receipt": 2.5,
                                   "release": 0.75})


def shown(value: Any) -> str:
    """A short, address-free description of a returned value."""
    if inspect.isawaitable(value):
        return awaitable_name(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_failures(findings: list) -> list:
    """Keep the first finding of each property (two runs may report the same thing)."""
    seen: set[str] = set()
    kept = []
    for finding in findings:
        if finding.prop not in seen:
            seen.add(finding.prop)
            kept.append(finding)
    return kept


@varied
def check_place_order(fn, *, variant: str = "public",
                      seed: int | None = None) -> Report:
    """Judge ``place_order(order_id, shop)``.

    Properties: reserve, charge and send_receipt run in that order, each after
    the previous one finished; each result is passed on (no coroutine objects);
    the receipt is returned; nothing is released after a successful payment;
    when the payment is declined, the reservation is released (and awaited)
    and the very PaymentDeclined raised by charge reaches the caller; no
    blocking call, nothing left un-awaited.
    """
    report = Report("place_order")
    bad = require_coroutine_function("place_order", fn)
    if bad:
        report.findings.append(bad)
        return report
    sc = scenario(variant, seed)
    namespaces = (getattr(fn, "__globals__", {}),)

    paid_shop = Shop(sc.latency_s)
    paid = observe(lambda: fn(sc.paid_order, paid_shop), name="place_order",
                   namespaces=namespaces, max_virtual_s=600)
    report.timeline = paid.timeline
    early = basic_findings("place_order", paid)
    if paid.hang is not None or isinstance(paid.error, NotImplementedError):
        report.findings.extend(early)
        return report

    declined_shop = Shop(sc.latency_s, declined={sc.declined_order})
    declined = observe(lambda: fn(sc.declined_order, declined_shop), name="place_order",
                       namespaces=namespaces, max_virtual_s=600)
    declined_error = declined_shop.raised[0] if declined_shop.raised else None
    if declined.hang is None and declined.error is not None and declined.error is declined_error:
        declined_early = basic_findings("place_order", replace(declined, error=None, result=None))
    elif declined.hang is None and declined.error is not None:
        declined_early = [f for f in basic_findings("place_order", declined)
                          if f.prop != "runs without error"]
    else:
        declined_early = basic_findings("place_order", declined)
    report.findings.extend(_first_failures(early + declined_early))
    if declined.hang is not None or paid.error is not None:
        return report  # a paid order must go through: nothing else can be judged

    # 1. The steps of a paid order: in order, one after the other, each once.
    calls = paid_shop.calls
    steps = paid_shop.steps()
    overlapping = [(a.step, b.step) for a, b in zip(calls, calls[1:])
                   if a.end is None or b.start < a.end]
    if steps == list(STEPS) and not overlapping:
        msg = "reserve -> charge -> send_receipt, each after the previous one finished"
        ok = True
    elif steps != list(STEPS):
        missing = [step for step in STEPS if step not in steps]
        msg = (f"for a paid order the shop saw: {' -> '.join(steps) or 'no call at all'}; "
               "expected reserve -> charge -> send_receipt")
        if missing:
            msg += f" ({' and '.join(missing)} never ran)"
        ok = False
    else:
        first, second = overlapping[0]
        msg = f"{second} started before {first} had finished"
        ok = False
    report.add("steps in order", ok, msg,
               "Await each step before starting the next one: each needs the previous one's "
               "result.")

    # 2. Results passed on, not coroutine objects.
    bad_args = [(c.step, arg) for c in calls + declined_shop.calls for arg in c.bad_args]
    wrong_value = None
    if not bad_args:
        reservation, payment = f"R-{sc.paid_order}", f"P-{sc.paid_order}"
        expected_args = {"charge": (sc.paid_order, reservation),
                         "send_receipt": (sc.paid_order, payment)}
        for c in calls:
            if c.step in expected_args and c.args != expected_args[c.step]:
                wrong_value = (c.step, c.args, expected_args[c.step])
                break
    if bad_args:
        step, what = bad_args[0]
        msg = (f"{step}() received {what} instead of a value: a forgotten `await` in front of "
               "that call")
    elif wrong_value:
        step, got, expected = wrong_value
        msg = f"{step}() was called with {got}, expected {expected}"
    else:
        msg = "charge got the reservation and send_receipt got the payment"
    report.add("results passed on", not bad_args and not wrong_value, msg,
               "`reservation = await shop.reserve(order_id)` gives you the value; pass that "
               "value to the next step.")

    # 3. The receipt is what place_order returns.
    expected_receipt = Shop.receipt_for(sc.paid_order, f"P-{sc.paid_order}")
    got = paid.result
    report.add("returns the receipt", got == expected_receipt,
               f"returned {expected_receipt!r}" if got == expected_receipt else
               f"returned {shown(got)}, expected {expected_receipt!r}",
               "Return what `await shop.send_receipt(order_id, payment)` gives you.")

    # 4. Nothing released after a successful payment.
    released = [c for c in calls if c.step == "release"]
    report.add("no release after a successful payment", not released,
               "a paid order keeps its stock" if not released else
               "release() was called for an order that was paid for: the customer pays but "
               "their stock goes back on the shelf",
               "Release only when charge() raised: in the `except` block, not in `finally`.")

    # 5. The payment error reaches the caller.
    if declined.error is not None and declined.error is declined_error:
        ok, msg = True, "the PaymentDeclined raised by charge() came out of place_order"
    elif declined.error is not None:
        ok = False
        msg = (f"place_order raised {describe_error(declined.error)} instead of the "
               "PaymentDeclined raised by charge()")
    elif declined_error is None:
        ok, msg = False, "charge() was never called for the declined order"
    else:
        ok = False
        msg = (f"place_order returned {shown(declined.result)} for a declined card: the caller "
               "never learns that the payment failed")
    report.add("the payment error reaches the caller", ok, msg,
               "After releasing the reservation, re-raise the same exception with a bare "
               "`raise` inside the `except` block.")

    # 6. Reservation released (and awaited) when the payment fails.
    d_calls = declined_shop.calls
    releases = [c for c in d_calls if c.step == "release"]
    reservation = f"R-{sc.declined_order}"
    if declined_error is None:
        ok, msg = False, "charge() was never called for the declined order"
    elif not releases:
        ok, msg = False, ("the card was declined and release() was never called: that stock "
                          "stays reserved for nobody")
        if any("release" in name for name in declined.never_awaited):
            msg = ("release() was called but never awaited, so it never ran: that stock stays "
                   "reserved for nobody")
    elif len(releases) > 1:
        ok, msg = False, f"release() was called {len(releases)} times"
    elif releases[0].args != (reservation,) and not releases[0].bad_args:
        ok = False
        msg = f"release() was called with {releases[0].args}, expected ({reservation!r},)"
    elif releases[0].outcome != "ok":
        ok, msg = False, ("release() was started but had not finished when place_order ended: "
                          "await it before raising")
    else:
        ok, msg = True, "the declined order's reservation was released before place_order ended"
    report.add("reservation released when payment fails", ok, msg,
               "Wrap `await shop.charge(...)` in try/except; in the except block, "
               "`await shop.release(reservation)`, then `raise`.")
    failed = {f.prop for f in report.findings if not f.passed}
    if failed and failed <= {"the payment error reaches the caller",
                             "reservation released when payment fails"}:
        report.timeline = declined.timeline  # show the run that went wrong
    return report


EXERCISES = {"place_order": check_place_order}
