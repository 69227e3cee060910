"""Check that the studio can talk to Kling with the configured settings."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks_app.kling import ErrorKind, KlingError
from tasks_app.kling_setup import kling_auth_mode, kling_client

_ADVICE = {
    ErrorKind.AUTH: "the key was refused: check KLING_API_KEY or KLING_ACCESS_KEY/KLING_SECRET_KEY",
    ErrorKind.NETWORK: "the host could not be reached: check KLING_API_BASE_URL and the network",
    ErrorKind.TIMEOUT: "the host did not answer in time: check KLING_API_BASE_URL",
    ErrorKind.NOT_FOUND: "the endpoint was not found: check KLING_API_BASE_URL (a reseller's "
    "base URL includes its /kling prefix)",
    ErrorKind.BAD_RESPONSE: "the answer was not Kling's: check KLING_API_BASE_URL (a reseller's "
    "base URL includes its /kling prefix)",
}


class Command(BaseCommand):
    help = "Call Kling's task list with the configured settings and report whether it works."

    def handle(self, *args, **options) -> None:
        base_url = settings.KLING_API_BASE_URL
        mode = kling_auth_mode()
        demo = " (demo mode: the built-in simulator)" if settings.KLING_DEMO else ""
        try:
            page = kling_client().list_tasks(page=1, page_size=1)
        except KlingError as err:
            advice = _ADVICE.get(err.kind, err.user_message)
            raise CommandError(
                f"Kling check failed for {base_url} with {mode} auth{demo}: {advice}. ({err})"
            ) from None
        self.stdout.write(
            f"OK: {base_url} answered with {mode} auth{demo}; request id {page.request_id or '-'}."
        )
