"""Checks for notebook 02_coroutines: a chain of awaits that passes results on and errors up."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

from asynclab.checking import (Report, awaitable_name, basic_findings, close_if_coroutine,
                               describe_error, hidden_rng,
                               observe, require_coroutine_function, varied)
from asynclab.fakes import PaymentDeclined, ReceiptNotSent, OutOfStock, Shop

NOTEBOOK = "02_coroutines"
STEPS = ("reserve", "charge", "send_receipt")


@dataclass(frozen=True)
class Scenario:
    paid_order: str
    declined_order: str
    latency_s: dict[str, float]


def scenario(variant: str, seed: int | None = None) -> Scenario:
    """The public orders and latencies; hidden: order ids and latencies drawn from ``seed``."""
    if variant == "public":
        return Scenario("A-17", "B-99", {"reserve": 2.0, "charge": 3.0, "send_receipt": 1.0,
                                         "release": 1.0})
    rng = hidden_rng(variant, seed)
    paid, declined = rng.sample(range(10, 100), 2)
    return Scenario(f"K-{paid}", f"Z-{declined}",
                    {step: rng.choice([0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 4.5])
                     for step in ("reserve", "charge", "send_receipt", "release")})


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
               "result.", "step never started" if steps != list(STEPS) and any(
                   step not in steps for step in STEPS) else
               "steps out of order" if steps != list(STEPS) else "steps overlap")

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
               "value to the next step." if bad_args else
               "Pass each step exactly what the previous one returned: charge(order_id, "
               "reservation), then send_receipt(order_id, payment).",
               "forgotten await" if bad_args else "wrong value passed on")

    # 3. The receipt is what place_order returns.
    expected_receipt = Shop.receipt_for(sc.paid_order, f"P-{sc.paid_order}")
    got = paid.result
    report.add("returns the receipt", got == expected_receipt,
               f"returned {expected_receipt!r}" if got == expected_receipt else
               f"returned {shown(got)}, expected {expected_receipt!r}",
               "Return what `await shop.send_receipt(order_id, payment)` gives you.",
               "wrong return value")

    # 4. Nothing released after a successful payment.
    released = [c for c in calls if c.step == "release"]
    report.add("no release after a successful payment", not released,
               "a paid order keeps its stock" if not released else
               "release() was called for an order that was paid for: the customer pays but "
               "their stock goes back on the shelf",
               "Release only when charge() raised: in the `except` block, not in `finally`.",
               "releases after a successful payment")

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
               "`raise` inside the `except` block.",
               "error replaced" if declined.error is not None else
               "step never started" if declined_error is None else "error swallowed")

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
    if declined_error is None:
        diagnosis = "step never started"
    elif not releases:
        diagnosis = ("release not awaited" if "never awaited" in msg else "never releases")
    elif len(releases) > 1:
        diagnosis = "released twice"
    elif "expected" in msg:
        diagnosis = "released the wrong thing"
    else:
        diagnosis = "release not finished"
    hints = {
        "never releases": "Wrap `await shop.charge(...)` in try/except; in the except block, "
                          "`await shop.release(reservation)`, then `raise`.",
        "release not awaited": "`shop.release(reservation)` only creates a coroutine: write "
                               "`await shop.release(reservation)`.",
        "released twice": "Release once, in the except block around charge().",
        "released the wrong thing": "Release what reserve() returned (the reservation), not "
                                    "the order id.",
        "release not finished": "Await the release itself (`await shop.release(reservation)`) "
                                "before re-raising; a task you do not await may not be done.",
    }
    report.add("reservation released when payment fails", ok, msg,
               hints.get(diagnosis, "Call reserve() and charge() for every order."), diagnosis)
    later = _judge_other_failures(report, fn, sc, namespaces)
    failed = {f.prop for f in report.findings if not f.passed}
    if failed and failed <= {"the payment error reaches the caller",
                             "reservation released when payment fails"}:
        report.timeline = declined.timeline  # show the run that went wrong
    elif failed and failed <= {"a failure after the payment keeps it"} and later is not None:
        report.timeline = later.timeline
    return report


def _judge_other_failures(report: Report, fn: Any, sc: Scenario, namespaces: tuple) -> Any:
    """Each step failing in turn: the receipt (after the payment) and the reservation (before it).

    A try block that also covers a later step undoes a payment that went through: the
    customer pays and their stock goes back on the shelf. A failed reservation has
    nothing to undo and nothing to charge. In both, the step's own error reaches the caller.
    """
    order = f"{sc.paid_order}-2"
    shop = Shop(sc.latency_s, failing_step="send_receipt")
    obs = observe(lambda: fn(order, shop), name="place_order", namespaces=namespaces,
                  max_virtual_s=600)
    close_if_coroutine(obs.result)  # a forgotten await is reported by the first run
    raised = shop.raised[0] if shop.raised else None
    released = [c for c in shop.calls if c.step == "release"]
    if obs.hang is not None or raised is None:
        return None  # judged elsewhere: a paid order that never sends its receipt
    if released:
        report.add("a failure after the payment keeps it", False,
                   "send_receipt() failed after the payment went through, and release() gave "
                   "the stock back: the customer has paid for nothing",
                   "Your try block covers more than the payment: put only "
                   "`await shop.charge(...)` inside it, and send the receipt after the "
                   "try/except, so that a failed receipt does not undo a payment.",
                   "try covers a later step")
    elif obs.error is not raised:
        what = (f"raised {describe_error(obs.error)}" if obs.error is not None else
                f"returned {shown(obs.result)}")
        report.add("a failure after the payment keeps it", False,
                   f"send_receipt() failed with ReceiptNotSent, and place_order {what}: the "
                   "caller cannot tell what went wrong",
                   "Let an error from send_receipt() reach the caller unchanged: no except "
                   "around it (or a bare `raise`).",
                   "error swallowed" if obs.error is None else "error replaced")
    else:
        report.add("a failure after the payment keeps it", True,
                   "when send_receipt() failed, the payment stood and its error reached the caller")

    order = f"{sc.declined_order}-2"
    shop = Shop(sc.latency_s, failing_step="reserve")
    obs_r = observe(lambda: fn(order, shop), name="place_order", namespaces=namespaces,
                    max_virtual_s=600)
    close_if_coroutine(obs_r.result)
    raised = shop.raised[0] if shop.raised else None
    after = [c.step for c in shop.calls if c.step != "reserve"]
    if obs_r.hang is not None or raised is None:
        return obs
    if after:
        first = after[0]
        report.add("a failed reservation stops the order", False,
                   f"reserve() failed with OutOfStock, and {first}() was still called",
                   "When reserve() fails there is nothing to charge and nothing to release: "
                   "call reserve() before the try block, so its error goes straight to the "
                   "caller.", "charged without a reservation" if first == "charge" else
                   "released what was never reserved")
    elif obs_r.error is not raised:
        what = (f"raised {describe_error(obs_r.error)}" if obs_r.error is not None else
                f"returned {shown(obs_r.result)}")
        report.add("a failed reservation stops the order", False,
                   f"reserve() failed with OutOfStock, and place_order {what}",
                   "Let an error from reserve() reach the caller unchanged: keep "
                   "`await shop.reserve(order_id)` outside the try block.",
                   "error swallowed" if obs_r.error is None else "error replaced")
    else:
        report.add("a failed reservation stops the order", True,
                   "when reserve() failed, nothing was charged and its error reached the caller")
    return obs


EXERCISES = {"place_order": check_place_order}
