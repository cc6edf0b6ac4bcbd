"""The API's state backends: embedded (one process) or Redis (several processes and machines).

See :mod:`mock_server._state._base` for the interface the resources use.
"""

from ._base import PENDING, ApiState, CopyStale, Keep, KeptBefore, Refused, Ticket, state_unavailable

__all__ = ["PENDING", "ApiState", "CopyStale", "Keep", "KeptBefore", "Refused", "Ticket", "state_unavailable"]
