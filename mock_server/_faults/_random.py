"""A counter-based random generator: every draw is a pure function of its key.

A decision is keyed by (seed, rule id, session, per-key sequence number, stream), hashed with
BLAKE2b. There is no shared generator state, so the n-th request of a session that a rule sees
gets the same draw whatever other sessions, connections or timings did meanwhile; the global
``random`` module is never used (hypothesis reseeds it, and it is shared by every caller).
"""

from __future__ import annotations

from hashlib import blake2b

_SCALE = 2.0**-53
_NO_SESSION = "\x00"


def draws(seed: int, rule_id: str, session: str | None, n: int, stream: str) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) for one key; ``stream`` separates uses (``p``, ``latency``)."""
    key = f"{seed}\x1f{rule_id}\x1f{_NO_SESSION if session is None else session}\x1f{n}\x1f{stream}"
    digest = blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return (
        (int.from_bytes(digest[:8], "little") >> 11) * _SCALE,
        (int.from_bytes(digest[8:], "little") >> 11) * _SCALE,
    )


def uniform(seed: int, rule_id: str, session: str | None, n: int, stream: str) -> float:
    """One uniform in [0, 1) for one key."""
    return draws(seed, rule_id, session, n, stream)[0]
