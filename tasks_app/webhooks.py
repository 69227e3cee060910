"""Standard Webhooks signature checks for Kling's signed callbacks, by the ``standardwebhooks``
library (the demo simulator signs with the same library, so the two always agree).

The secret is read by the library's rule: a ``whsec_`` prefix is dropped and the rest is
base64-decoded leniently (characters outside the base64 alphabet are skipped, missing padding
is added); the bytes are the HMAC key. So ``whsec_<b64>``, the bare ``<b64>`` and unpadded
base64 are one key, and a text that is not base64 (``hunter2``) is the key its letters spell
as base64, never its UTF-8 bytes. A secret the library refuses (one that decodes to nothing or
to an impossible length) cannot check anything: every signed callback is then refused, and
the log says why. Refusing costs little, as a callback is only a hint to poll now.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

logger = logging.getLogger(__name__)


class InvalidSignature(Exception):
    """The callback cannot be shown to come from Kling: refuse it."""


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``body`` carries a valid signature made within five
    minutes of now (the library's tolerance, either way).

    ``headers`` needs ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (in any
    letter case); one valid signature among several (a key rotation) is enough.
    """
    try:
        webhook = Webhook(secret)
    except (ValueError, EmptyWebhookSecretError):
        logger.error(
            "KLING_WEBHOOK_SECRET is not a Standard Webhooks secret (whsec_ followed by "
            "base64), so no callback signature can be checked: callbacks are refused"
        )
        raise InvalidSignature("unusable webhook secret") from None
    try:
        webhook.verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise InvalidSignature(str(exc)) from None
    except ValueError:
        # What the library does not turn into its own error: a body that is not UTF-8, a
        # signature without its "v1," or not base64. Not a signature it could accept either.
        raise InvalidSignature("malformed signature headers or body") from None
