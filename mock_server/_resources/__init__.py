"""The API's resources, one module each: profiles (cursors, conditional requests), generation,
OAuth, analytics and idempotency. Each takes the :class:`~mock_server._state.ApiState` it works
on; :mod:`mock_server._api` builds them and routes requests to them."""

from ._analytics import Analytics
from ._common import Call, Handler
from ._generation import Generation
from ._idempotency import Idempotency
from ._oauth import OAuth
from ._profiles import Profiles

__all__ = ["Analytics", "Call", "Generation", "Handler", "Idempotency", "OAuth", "Profiles"]
