"""A rule's ``when: after``: the API (or the upstream) acts first, then the client gets the fault.

``when: before`` (the default) is the fault layer's usual order: the fault answers instead of the
API, and in proxy mode the upstream is never contacted. ``when: after`` runs the app to the end
first, so the upstream (or the fake's API) does what the request asked and writes its answer,
which the layer reads and throws away (chunk by chunk: nothing is kept). Only then come the
rule's delay and its fault: a ``reset`` or ``close`` after the upstream created the resource, a
``timeout`` after it charged the card, a ``status`` 503 hiding a success. That is the lost
answer that makes idempotency keys matter.

A pure ``latency`` rule with ``when: after`` delays the answer once the upstream has given it,
instead of delaying the request on its way there. ``truncate``, ``malformed_json``,
``wrong_content_type`` and ``slow_body`` change the upstream's answer, so they come after it
whatever ``when`` says.

The fault layer calls :func:`inject` for every decision; the rules' ``when`` picks the order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._engine import Decision
from ._journal import Entry
from ._model import Rule

#: Faults that change the app's own answer: they come after it in either order.
ALTERING = frozenset({"truncate", "malformed_json", "wrong_content_type", "slow_body"})
_ELAPSED = "elapsed"


class Injecting(Protocol):
    """What this module needs of the fault layer's injectors."""

    app: ASGIApp

    async def inject(
        self, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None: ...

    async def hold(
        self, delay_s: float | None, session: str | None, scope: Scope, receive: Receive | None = None
    ) -> str: ...

    async def answer_cancelled(self, entry: Entry, send: Send, why: str) -> None: ...

    def observing(self, entry: Entry, send: Send) -> Send: ...


RuleOf = Callable[[str], Rule | None]


def is_after(decision: Decision, rule_of: RuleOf) -> bool:
    """Whether ``decision`` is to be carried out after the app: its fault's rule says
    ``when: after`` (for a pure delay: every rule that added to it does)."""
    if decision.fault is not None:
        if decision.fault.type in ALTERING or decision.rule is None:
            return False
        rule = rule_of(decision.rule)
        return rule is not None and rule.when == "after"
    if not decision.rules or decision.delay_s <= 0:
        return False
    for rule_id in decision.rules:
        rule = rule_of(rule_id)
        if rule is None or rule.when != "after":
            return False
    return True


async def inject(
    injectors: Injecting,
    rule_of: RuleOf,
    decision: Decision,
    entry: Entry,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Carry out ``decision`` in the order its rules' ``when`` says."""
    if not is_after(decision, rule_of):
        await injectors.inject(decision, entry, scope, receive, send)
    elif decision.fault is None:
        await _delay_answer(injectors, decision, entry, scope, receive, send)
    else:
        read = await act_first(injectors.app, scope, receive)
        await injectors.inject(decision, entry, scope, read, send)


async def act_first(app: ASGIApp, scope: Scope, receive: Receive) -> Receive:
    """Run ``app`` to the end, its answer read and dropped; the ``receive`` to use afterwards,
    which says the body has been read (it has) and then waits for the client to go."""
    body_done = False

    async def tracking() -> Message:
        nonlocal body_done
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    async def dropped(message: Message) -> None:
        return None

    await app(scope, tracking, dropped)
    told = False

    async def after() -> Message:
        nonlocal told
        if not told and body_done:
            told = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The app stopped before the end of the body (or it was read): the rest comes as it is.
        return await receive()

    return after


async def _delay_answer(
    injectors: Injecting, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
) -> None:
    """The app's answer, held back ``decision.delay_s`` once its status and headers are in."""
    observed = injectors.observing(entry, send)
    held: str | None = None

    async def delayed(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start" and held is None:
            held = await injectors.hold(decision.delay_s, entry.session, scope)
            if held != _ELAPSED:
                await injectors.answer_cancelled(entry, send, held)
                return
        if held not in (None, _ELAPSED):
            return  # cancelled: the 503 went instead; the rest of the answer is dropped
        await observed(message)

    await injectors.app(scope, receive, delayed)
