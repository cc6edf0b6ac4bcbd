"""Deterministic stand-in for content generation.

The same tenant, prompt, profile, max_length and temperature always give the same
content and vector: the output is derived from a SHA-256 of those inputs alone.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

MODEL = "resonance-v6-fake"

_WORDS = (
    "resonance harmonic signal cadence warmth clarity rhythm texture tone voice pulse depth "
    "balance contour motion light calm focus bright steady gentle vivid open layered flowing "
    "measured human tuned story audience moment feeling pattern shape echo"
).split()


def generate(
    tenant: str,
    prompt: str,
    profile: str | None,
    max_length: int,
    temperature: float,
    profile_vector: Sequence[float] | None,
) -> tuple[str, list[float], int]:
    """Content, an 8-float vector in 0..1 and a token count for these inputs."""
    seed = hashlib.sha256(
        "\x1f".join((tenant, prompt, profile or "", str(max_length), repr(float(temperature)))).encode()
    ).digest()
    stream = hashlib.shake_256(seed).digest(40 + 2 * 256)
    raw = struct.unpack_from(">8I", stream)
    vector = [round(v / 0xFFFFFFFF, 6) for v in raw]
    if profile_vector is not None:
        # A profile pulls the output towards its own resonance.
        vector = [round(0.5 * a + 0.5 * b, 6) for a, b in zip(vector, profile_vector, strict=True)]
    tokens = max(1, min(max_length, 8 + len(prompt.split()) * 3 + stream[32] % 24))
    picks = stream[40:]
    words = [_WORDS[(picks[2 * i] << 8 | picks[2 * i + 1]) % len(_WORDS)] for i in range(min(tokens, 256))]
    content = " ".join(words).capitalize() + "."
    return content, vector, tokens
