"""The one exception of the fault layer: a rule, rule file or fault header is invalid.

* ConfigError (mock_server.exceptions)
  - FaultConfigError  -- names the bad field, e.g. ``rules[2].fault.status: must be 400..599``
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import ConfigError

Loc = tuple[str | int, ...]


def render_loc(loc: Sequence[str | int]) -> str:
    """``("rules", 2, "fault")`` as ``rules[2].fault``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class FaultConfigError(ConfigError):
    """A fault rule, rule file, preset name or fault header is invalid."""

    def __init__(self, loc: Sequence[str | int], msg: str) -> None:
        self.loc: Loc = tuple(loc)
        self.msg = msg
        where = render_loc(self.loc)
        super().__init__(f"{where}: {msg}" if where else msg)

    @property
    def details(self) -> list[dict[str, object]]:
        """The error in the contract's ``details`` shape: ``[{"loc": [...], "msg": ...}]``."""
        return [{"loc": list(self.loc), "msg": self.msg}]

    def within(self, *prefix: str | int) -> FaultConfigError:
        """The same error, located under ``prefix``."""
        return FaultConfigError((*prefix, *self.loc), self.msg)
