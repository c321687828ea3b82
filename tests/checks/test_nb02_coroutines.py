"""The place_order check passes the reference and rejects what learners really write."""

from __future__ import annotations

import gc
import warnings

import pytest

from asynclab.checks import check
from conftest import assert_diagnosed, define, failed_props

REFERENCE = '''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise
    return await shop.send_receipt(order_id, payment)
'''

# name: (code, the property that must fail, a fragment of its message)
WRONG = {
    "forgotten await on reserve": ('''
async def place_order(order_id, shop):
    reservation = shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise
    return await shop.send_receipt(order_id, payment)
''', "results passed on", "charge() received a coroutine object Shop.reserve()",
      "forgotten await"),
    "forgotten await on release": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        shop.release(reservation)
        raise
    return await shop.send_receipt(order_id, payment)
''', "reservation released when payment fails", "called but never awaited",
      "release not awaited"),
    "returns the coroutine instead of awaiting it": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise
    return shop.send_receipt(order_id, payment)
''', "returns a value, not an awaitable", "returned a coroutine object Shop.send_receipt()",
      "returned an awaitable"),
    "swallows the payment error": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        return None
    return await shop.send_receipt(order_id, payment)
''', "the payment error reaches the caller", "returned None for a declined card",
      "error swallowed"),
    "returns the error message": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception as error:
        await shop.release(reservation)
        return str(error)
    return await shop.send_receipt(order_id, payment)
''', "the payment error reaches the caller", "returned 'card declined for order B-99'",
      "error swallowed"),
    "raises a different exception": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise RuntimeError("payment failed")
    return await shop.send_receipt(order_id, payment)
''', "the payment error reaches the caller", "raised RuntimeError: payment failed",
      "error replaced"),
    "never releases": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    payment = await shop.charge(order_id, reservation)
    return await shop.send_receipt(order_id, payment)
''', "reservation released when payment fails", "release() was never called",
      "never releases"),
    "releases in finally": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    finally:
        await shop.release(reservation)
    return await shop.send_receipt(order_id, payment)
''', "no release after a successful payment", "called for an order that was paid for",
      "releases after a successful payment"),
    "releases the order id": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(order_id)
        raise
    return await shop.send_receipt(order_id, payment)
''', "reservation released when payment fails", "release() was called with ('B-99',)",
      "released the wrong thing"),
    "release started but not awaited": ('''
import asyncio

async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        asyncio.create_task(shop.release(reservation))
        raise
    return await shop.send_receipt(order_id, payment)
''', "reservation released when payment fails", "had not finished when place_order ended",
      "release not finished"),
    "returns the payment, not the receipt": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise
    await shop.send_receipt(order_id, payment)
    return payment
''', "returns the receipt", "returned 'P-A-17'", "wrong return value"),
    "time.sleep to let the bank settle": ('''
import time

async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise
    time.sleep(0.5)
    return await shop.send_receipt(order_id, payment)
''', "never blocks the event loop", "time.sleep(0.5) in place_order()",
      "blocked the loop"),
    "crashes on a paid order": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    payment = await shop.charge(order_id, reservation)
    return await shop.send_receipt(order_id, payment.amount)
''', "runs without error", "AttributeError", "raised an error"),
    "the try also covers the receipt": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
        return await shop.send_receipt(order_id, payment)
    except Exception:
        await shop.release(reservation)
        raise
''', "a failure after the payment keeps it", "the customer has paid for nothing",
      "try covers a later step"),
    "the try covers everything, bare except": ('''
async def place_order(order_id, shop):
    reservation = None
    try:
        reservation = await shop.reserve(order_id)
        payment = await shop.charge(order_id, reservation)
        return await shop.send_receipt(order_id, payment)
    except:
        if reservation is not None:
            await shop.release(reservation)
        raise
''', "a failure after the payment keeps it", "release() gave the stock back",
      "try covers a later step"),
    "releases even when the reservation failed": ('''
async def place_order(order_id, shop):
    try:
        reservation = await shop.reserve(order_id)
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(f"R-{order_id}")
        raise
    return await shop.send_receipt(order_id, payment)
''', "a failed reservation stops the order", "release() was still called",
      "released what was never reserved"),
    "a receipt failure becomes None": ('''
async def place_order(order_id, shop):
    reservation = await shop.reserve(order_id)
    try:
        payment = await shop.charge(order_id, reservation)
    except Exception:
        await shop.release(reservation)
        raise
    try:
        return await shop.send_receipt(order_id, payment)
    except ConnectionError:
        return None
''', "a failure after the payment keeps it", "returned None", "error swallowed"),
    "not async": ('''
def place_order(order_id, shop):
    return None
''', "is a coroutine function", "plain function", "not async"),
    "stub": ('''
async def place_order(order_id, shop):
    raise NotImplementedError("write your solution here")
''', "written", "not written yet", "not written"),
}


@pytest.mark.parametrize("variant", ["public", "hidden"])
def test_reference_passes(variant):
    report = check(define(REFERENCE, "place_order"), variant=variant)
    assert report.passed, report.text()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_solution_is_rejected_with_the_right_message(name):
    code, prop, fragment, diagnosis = WRONG[name]
    report = check(define(code, "place_order"))
    assert not report.passed
    props = [f.prop for f in report.findings]
    assert len(props) == len(set(props)), report.text()
    assert_diagnosed(report, prop, fragment, diagnosis)


@pytest.mark.parametrize("seed", [None, 7, 8])
@pytest.mark.parametrize("name", ["never releases", "swallows the payment error",
                                  "forgotten await on reserve", "the try also covers the receipt"])
def test_hidden_variant_rejects_them_too(name, seed):
    code, prop, _, diagnosis = WRONG[name]
    report = check(define(code, "place_order"), variant="hidden", seed=seed)
    assert prop in failed_props(report), report.text()
    assert diagnosis in report.diagnoses


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_passes_any_hidden_seed(seed):
    assert check(define(REFERENCE, "place_order"), variant="hidden", seed=seed).passed


def test_forgotten_awaits_are_also_reported_as_such():
    report = check(define(WRONG["forgotten await on release"][0], "place_order"))
    assert "coroutine 'Shop.release' was never awaited" in \
        failed_props(report)["every coroutine awaited"], report.text()


def test_checks_leave_no_stray_warnings():
    """Coroutines the fake shop received instead of values are closed, not left to warn later."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(define(WRONG["forgotten await on reserve"][0], "place_order"))
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_report_text_is_deterministic():
    fn = define(WRONG["never releases"][0], "place_order")
    assert check(fn).text() == check(fn).text()
