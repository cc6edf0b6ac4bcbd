"""A fault-injecting fake of the ResonanceOS v6 API, with real state and a journal.

Start it with ``python -m mock_server serve`` or, in tests, with :class:`ServerThread`
or the ``mock_server`` pytest fixture; several processes acting as one with :class:`Workers`.
"""

from ._admin_client import AdminClient, AdminError
from ._app import build, create_app
from ._config import ServerConfig
from ._server import ServerThread
from ._tenants import DEFAULT_TENANTS, RateLimit, Tenant, load_tenants
from ._workers import Workers
from .exceptions import ConfigError, MockServerError

__all__ = [
    "AdminClient",
    "AdminError",
    "DEFAULT_TENANTS",
    "ConfigError",
    "MockServerError",
    "RateLimit",
    "ServerConfig",
    "ServerThread",
    "Tenant",
    "Workers",
    "build",
    "create_app",
    "load_tenants",
]
