"""A request's fault arrival, carried into the API's first round trip to the shared store.

With ``--state`` (or ``--workers``), the fault counters and the API's state both live in Redis. A
request that a fault rule matches must be counted there (that count is the fault decision)
before the API acts on it: a fault that fires answers in the API's place, or delays it. Done
apart, that is two round trips. Instead the fault layer leaves the arrival as a
:class:`Prelude` in :data:`CURRENT`, and the API's state sends it in the same Lua script as the
request's first operation. The script counts the request and runs the operation unless a rule
fired whose fault must come before the API: one that answers in its place, or a delay. Then
nothing of the operation happened; :class:`Preempted` unwinds the API to the fault layer, which
carries out the decision (a fault answers instead of the API; after a delay, the API runs again,
the prelude settled). A fault the API acts before (``when: after``, or one that alters the API's
answer and has no delay) lets the operation run: the fault layer keeps the API's answer and
carries out the fault around it, as it would have.

A request that makes no state operation (``/health``, a 404, a validation error before any
read) has its arrival sent alone: by the endpoint before it answers (``ApiState.settle``), or by
the fault layer when the answer starts, whichever comes first. Either way one round trip.

The fault side (``_faults._redis_state``) makes preludes and the API side
(``_state._redis``) runs them; this module is all they share, so neither imports the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from typing import Any


class Preempted(BaseException):
    """A fault rule fired on the request's arrival: the API stops, and nothing of the
    operation that carried the arrival happened. A ``BaseException``, so that the API's
    handlers, which turn every ``Exception`` into an answer, let it through to the fault layer."""

    def __init__(self, decision: Any, unavailable: str | None = None) -> None:
        super().__init__(unavailable or "a fault rule fired on arrival")
        #: What the fault layer is to carry out; None when the arrival could not be counted
        #: at all (the shared store is away: ``unavailable`` says why, and the request is a 503).
        self.decision = decision
        self.unavailable = unavailable


class Prelude(ABC):
    """A request's arrival, not counted yet.

    :attr:`script` is the arrival's Lua text (its arguments are ``ARGV``); its reply is
    ``{'ok', 0, n1, fired1, n2, fired2, ...}`` when the request was counted, anything else
    when it was not (the rules changed, for instance) and must be sent again alone.
    """

    script: str

    @abstractmethod
    def take(self) -> list[str | int | float] | None:
        """The arrival's arguments, to send now with an operation; None when it has been sent
        (or settled) already, then :meth:`wait` for it."""

    @abstractmethod
    async def settle(self, reply: Any, ran: bool) -> bool:
        """The reply of the arrival sent with an operation, and whether the operation ran: it
        does when the request was counted and no rule fired that must come before the API.
        Raises :class:`Preempted` when one did; returns whether the operation ran (False: the
        arrival had to be sent again alone, and the operation is to be sent on its own)."""

    @abstractmethod
    def lost(self) -> None:
        """The round trip that carried the arrival failed (the store is away): the request
        goes on as one no rule decided, and the API answers its own 503."""

    @abstractmethod
    async def wait(self) -> None:
        """Until the arrival is settled, sending it alone if nobody has; raises
        :class:`Preempted` when a rule fired, or when the store could not count it."""


#: The prelude of the request this task serves, if its arrival is still to be counted.
CURRENT: ContextVar[Prelude | None] = ContextVar("mock_server_prelude", default=None)
