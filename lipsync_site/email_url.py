"""E-mail settings from one URL (``EMAIL_URL``), read strictly.

``smtp+tls://user:pass@host:587`` (STARTTLS), ``smtp+ssl://user:pass@host:465`` (or
``smtps://``, TLS from the first byte), ``smtp://host:25`` (plain), ``console://`` (written
to the log), ``locmem://`` (kept in memory, for tests), ``dummy://`` (dropped). The user
name and password are percent-decoded (``%40`` for ``@``, ``%3A`` for ``:``, ``%2F`` for
``/``). One query parameter is understood, ``timeout`` (seconds). Anything else (an unknown
scheme, a path, a port that is not a number, a host missing) stops start-up with a message
that names ``EMAIL_URL``; the password never appears in it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

CONSOLE = "django.core.mail.backends.console.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
DUMMY = "django.core.mail.backends.dummy.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"

# Backends that send nothing anywhere: password reset is not offered with them.
NOT_SENDING = frozenset({CONSOLE, LOCMEM, DUMMY})

_LOCAL = {"console": CONSOLE, "locmem": LOCMEM, "dummy": DUMMY}
# scheme: (use STARTTLS, use TLS from the start, default port)
_SMTP = {
    "smtp": (False, False, 25),
    "smtp+tls": (True, False, 587),
    "smtp+ssl": (False, True, 465),
    "smtps": (False, True, 465),
}


def _fail(reason: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"EMAIL_URL {reason}")


def parse_email_url(url: str) -> dict[str, Any]:
    """Django's e-mail settings (``EMAIL_BACKEND``, ``EMAIL_HOST`` ...) for ``url``."""
    scheme, separator, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not separator:
        raise _fail("must look like smtp+tls://user:password@host:587 or console://")
    if scheme in _LOCAL:
        if rest.strip("/"):
            raise _fail(f"{scheme}:// takes nothing after it")
        return {"EMAIL_BACKEND": _LOCAL[scheme]}
    if scheme not in _SMTP:
        known = ", ".join(f"{name}://" for name in [*_SMTP, *_LOCAL])
        raise _fail(f"has an unknown scheme {scheme!r}: use one of {known}")
    starttls, ssl, default_port = _SMTP[scheme]
    parts = urlsplit(url.strip())
    if parts.path not in ("", "/") or parts.fragment:
        raise _fail("takes no path: smtp+tls://user:password@host:587")
    if not parts.hostname:
        raise _fail(f"needs a host: {scheme}://host:{default_port}")
    try:
        port = parts.port
    except ValueError:
        raise _fail("has a port that is not a number from 1 to 65535") from None
    if port == 0:
        raise _fail("has a port that is not a number from 1 to 65535")
    if parts.password is not None and not parts.username:
        raise _fail("has a password without a user name")
    settings: dict[str, Any] = {
        "EMAIL_BACKEND": SMTP,
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port or default_port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": starttls,
        "EMAIL_USE_SSL": ssl,
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "timeout":
            raise _fail(f"has an unknown parameter {name!r} (only timeout is understood)")
        if not value.isascii() or not value.isdigit() or int(value) < 1:
            raise _fail(f"timeout must be a whole number of seconds, not {value!r}")
        settings["EMAIL_TIMEOUT"] = int(value)
    return settings
