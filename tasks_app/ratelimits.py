"""Limits that keep one person (or one guesser) from overwhelming the studio or Kling."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from tasks_app.models import Job, LoginFailure

LOGIN_WINDOW = timedelta(minutes=15)


def login_is_blocked(*, username: str, ip: str | None) -> bool:
    """Too many recent failures for this account, or from this address."""
    since = timezone.now() - LOGIN_WINDOW
    recent = LoginFailure.objects.filter(created_at__gte=since)
    by_user = recent.filter(username__iexact=username).count()
    by_ip = recent.filter(ip=ip).count() if ip else 0
    return by_user >= settings.LOGIN_FAILURES_PER_ACCOUNT or by_ip >= settings.LOGIN_FAILURES_PER_IP


def login_failure_record(*, username: str, ip: str | None) -> None:
    LoginFailure.objects.create(username=username[:150], ip=ip)
    # Old failures carry no weight; forget them so the table stays small.
    LoginFailure.objects.filter(created_at__lt=timezone.now() - timedelta(days=1)).delete()


def login_failures_clear(*, username: str, ip: str | None) -> None:
    same = Q(username__iexact=username)
    LoginFailure.objects.filter(same | Q(ip=ip) if ip else same).delete()


def submission_is_allowed(*, user: AbstractBaseUser) -> bool:
    """At most SUBMISSIONS_PER_MINUTE new jobs a minute per person."""
    since = timezone.now() - timedelta(minutes=1)
    recent = Job.objects.filter(submitted_by=user, created_at__gte=since).count()
    return recent < settings.SUBMISSIONS_PER_MINUTE
