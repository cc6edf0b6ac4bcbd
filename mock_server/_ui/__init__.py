"""The dashboard (``/__admin/ui``), the admin API's OpenAPI document and ``/docs``.

Plain HTML, JavaScript and CSS shipped in ``static/``: no CDN, no build step, nothing fetched
from the network. The page reads the journal live from ``GET /__admin/events``.
"""

from ._docs import DocsApp, is_docs
from ._openapi import admin_openapi
from ._routes import PUBLIC_PATHS, Ui, parse_yaml, ui_routes

__all__ = ["PUBLIC_PATHS", "DocsApp", "Ui", "admin_openapi", "is_docs", "parse_yaml", "ui_routes"]
