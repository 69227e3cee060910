"""Strict readers for settings that come from the environment.

A malformed value stops start-up with a message that names the variable, rather than being
silently read as a default (after healthchecks' ``envbool``/``envint``).
"""

from __future__ import annotations

import math
import os
from typing import overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@overload
def envstr(name: str, default: str) -> str: ...
@overload
def envstr(name: str, default: None = None) -> str | None: ...
def envstr(name: str, default: str | None = None) -> str | None:
    """The variable's value, or ``default`` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value if value else default


def envbool(name: str, default: bool) -> bool:
    value = envstr(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off, not {value!r}"
    )


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    value = envstr(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def envfloat(name: str, default: float, *, above: float | None = None) -> float:
    """A decimal number (``0.5``, ``48``); ``above`` is an exclusive lower bound."""
    value = envstr(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {value!r}")
    if above is not None and number <= above:
        raise ImproperlyConfigured(f"{name} must be more than {above:g}, not {value}")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    value = envstr(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


@overload
def envurl(name: str, default: str) -> str: ...
@overload
def envurl(name: str, default: None = None) -> str | None: ...
def envurl(name: str, default: str | None = None) -> str | None:
    """An http(s) URL without a trailing slash."""
    value = envstr(name, default)
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or "://" not in value[:8] or len(value) < 10:
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


LOCAL_CACHE = "django.core.cache.backends.locmem.LocMemCache"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def envcache(name: str) -> dict[str, str]:
    """The default cache the URL in ``name`` selects: ``redis://`` or ``rediss://`` (TLS) for
    a Redis that every node shares, or, unset, a cache in each process (one machine only)."""
    value = envstr(name)
    if value is None:
        return {"BACKEND": LOCAL_CACHE}
    if value.startswith(("redis://", "rediss://")) and len(value.split("://", 1)[1]) > 0:
        return {"BACKEND": REDIS_CACHE, "LOCATION": value}
    # Only the scheme is repeated: the rest may hold a password.
    given = f"a {value.split('://', 1)[0]}:// URL" if "://" in value else "a value without a scheme"
    raise ImproperlyConfigured(
        f"{name} must be a redis:// or rediss:// URL (e.g. redis://127.0.0.1:6379/0), or "
        f"unset for a cache in each process, not {given}"
    )
