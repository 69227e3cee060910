"""The one place the Django side builds a Kling client from settings."""

from __future__ import annotations

import threading

from django.conf import settings

from tasks_app.kling import ApiKeyAuth, JwtAuth, KlingClient

_lock = threading.Lock()
_clients: dict[tuple, KlingClient] = {}


def _config() -> tuple:
    return (
        settings.KLING_API_BASE_URL,
        settings.KLING_API_KEY,
        settings.KLING_ACCESS_KEY,
        settings.KLING_SECRET_KEY,
        settings.KLING_CONNECT_TIMEOUT,
        settings.KLING_READ_TIMEOUT,
    )


def kling_client() -> KlingClient:
    """A shared client for the current settings (one connection pool per configuration)."""
    config = _config()
    with _lock:
        client = _clients.get(config)
        if client is None:
            base_url, api_key, access_key, secret_key, connect_timeout, read_timeout = config
            auth = JwtAuth(access_key, secret_key) if access_key else ApiKeyAuth(api_key)
            client = KlingClient(
                base_url=base_url,
                auth=auth,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
            _clients[config] = client
        return client


def kling_auth_mode() -> str:
    return "access-key" if settings.KLING_ACCESS_KEY else "api-key"
