"""The background worker: django-tasks-db's worker, plus a sweep for jobs whose run was lost."""

from __future__ import annotations

import logging
import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from tasks_app.services import job_sweep

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the background worker that sends jobs to Kling and follows them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5)
        parser.add_argument("--sweep-every", type=float, default=60.0)

    def handle(self, *, interval: float, sweep_every: float, **options) -> None:
        stop = threading.Event()

        def sweep_forever() -> None:
            # A job whose run died with a killed worker is still owed its next step.
            while not stop.is_set():
                try:
                    swept = job_sweep()
                    if swept:
                        logger.info("Rescheduled %d job(s) whose run was lost", swept)
                except Exception:
                    logger.exception("The sweep failed; it will run again")
                finally:
                    close_old_connections()
                stop.wait(sweep_every)

        threading.Thread(target=sweep_forever, name="job-sweep", daemon=True).start()
        try:
            call_command(
                "db_worker",
                interval=interval,
                reload=False,
                startup_delay=False,
                verbosity=options["verbosity"],
            )
        finally:
            stop.set()
