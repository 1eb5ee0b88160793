"""The HTTP intake where AI recommenders submit proposals; `create_app` and `serve` run it."""

from interlock.api.app import create_app
from interlock.api.errors import ErrorBody
from interlock.api.server import ApiServeError, api_command, serve
from interlock.api.settings import ApiSettings, Rate

__all__ = [
    "ApiServeError",
    "ApiSettings",
    "ErrorBody",
    "Rate",
    "api_command",
    "create_app",
    "serve",
]
