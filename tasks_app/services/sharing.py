"""Share links: a finished video opened by people without an account, until it expires or is
revoked.

A link carries a random token (32 bytes from ``secrets``); only its SHA-256 is stored, so the
database alone cannot rebuild a link, and a token cannot be guessed or enumerated. The link
is shown once, when made.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.translation import gettext as _

from tasks_app.models import Job, JobStatus, ShareLink

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SHARE_DAYS_MIN, SHARE_DAYS_MAX, SHARE_DAYS_DEFAULT = 1, 30, 7
# What a token in a URL may look like: URL-safe base64 (``secrets.token_urlsafe``).
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
TOKEN_MAX_LENGTH = 64


class ShareRefused(Exception):
    """A share the rules turn down; the message is shown to the person as it is."""


def share_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def share_create(*, job: Job, created_by: User, days: int) -> tuple[ShareLink, str]:
    """Make a link to ``job``'s video, valid ``days`` days; return it and its token.

    Only a finished (succeeded) job is shared. The caller has checked that ``created_by`` may
    see the job (``Job.objects.visible_to``).
    """
    if job.status != JobStatus.SUCCEEDED:
        raise ShareRefused(_("Only a finished video can be shared."))
    if not (job.stored_video or job.kling_link_is_live):
        raise ShareRefused(_("This video is no longer available, so it cannot be shared."))
    if not SHARE_DAYS_MIN <= days <= SHARE_DAYS_MAX:
        raise ShareRefused(
            _("Choose from {min} to {max} days.").format(min=SHARE_DAYS_MIN, max=SHARE_DAYS_MAX)
        )
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    share = ShareLink.objects.create(
        job=job,
        token_hash=share_token_hash(token),
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    return share, token


def share_revoke(*, share: ShareLink) -> bool:
    """Stop a link at once; return whether it was live until now (revoking twice is harmless)."""
    revoked = ShareLink.objects.filter(pk=share.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    share.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


def share_find_live(*, token: str) -> ShareLink | None:
    """The live link whose token this is, with its job; None for anything else."""
    if not token or len(token) > TOKEN_MAX_LENGTH or not set(token) <= TOKEN_ALPHABET:
        return None
    return (
        ShareLink.objects.live()
        .select_related("job")
        .filter(token_hash=share_token_hash(token))
        .first()
    )
