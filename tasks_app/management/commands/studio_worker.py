"""The background worker: django-tasks-db's worker in several threads, plus a sweep for jobs
whose scheduled run was lost."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connections
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand
from django_tasks_db.management.commands.db_worker import Worker

from tasks_app.results import results_sweep
from tasks_app.services.lifecycle import job_sweep
from tasks_app.services.workers import worker_beat, worker_stop

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the background worker that sends jobs to Kling and follows them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.WORKER_THREADS,
            help="Tasks run at once. Most of a task is waiting for Kling, so threads, not "
            "processes, are what lets one worker follow hundreds of jobs.",
        )
        parser.add_argument("--interval", type=float, default=0.5)
        parser.add_argument("--sweep-every", type=float, default=60.0)

    def handle(self, *, threads: int, interval: float, sweep_every: float, **options) -> None:
        # The same task logging as django-tasks-db's own `db_worker` command.
        # django-stubs wants a TextIO, but any text stream will do, as our OutputWrapper does.
        DbWorkerCommand(stdout=self.stdout, stderr=self.stderr).configure_logging(  # type: ignore[arg-type]
            options["verbosity"]
        )
        stop = threading.Event()
        name = get_random_string(12)
        workers = [
            Worker(
                queue_names=["default"],
                interval=interval,
                batch=False,
                backend_name="default",
                startup_delay=False,
                max_tasks=None,
                worker_id=f"{name}-{i}",
                excluded_queue_names=[],
            )
            for i in range(max(1, threads))
        ]

        # Set by the signal handler, which must not touch ``stop``: a handler runs inside
        # whatever the main thread was doing, and if that was ``stop.wait()`` holding the
        # event's lock, ``stop.set()`` would wait for it forever. The main loop sets ``stop``.
        signalled: list[int] = []

        def shut_down(signum: int, frame: FrameType | None) -> None:
            if signalled:
                raise SystemExit(1)  # a second Ctrl-C: stop now
            signalled.append(signum)
            for worker in workers:
                worker.running = False

        signal.signal(signal.SIGINT, shut_down)
        signal.signal(signal.SIGTERM, shut_down)

        def run(worker: Worker) -> None:
            while not stop.is_set():
                try:
                    worker.run()
                except Exception:
                    # The database went away for a moment, say: the claimed task is owed to
                    # the sweep, and this thread tries again rather than dying.
                    logger.exception("Worker thread %s failed; restarting", worker.worker_id)
                    connections.close_all()
                    stop.wait(5)
                    worker.running = not stop.is_set()
                else:
                    break
            connections.close_all()

        def sweep_forever() -> None:
            # A job whose run died with a killed worker is still owed its next step.
            while not stop.is_set():
                try:
                    swept = job_sweep()
                    if swept:
                        logger.info("Rescheduled %d job(s) whose run was lost", swept)
                    copies = results_sweep()
                    if copies:
                        logger.info("Started again %d result copy(ies) that were lost", copies)
                except Exception:
                    logger.exception("The sweep failed; it will run again")
                finally:
                    close_old_connections()
                stop.wait(sweep_every)
            connections.close_all()

        def beat_forever() -> None:
            # The studio tells people waiting on a job when no worker has reported itself.
            started = timezone.now()
            while not stop.is_set():
                try:
                    worker_beat(
                        worker_id=name,
                        hostname=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=started,
                    )
                except Exception:
                    logger.exception("Could not record the worker's heartbeat; will try again")
                finally:
                    close_old_connections()
                stop.wait(settings.WORKER_HEARTBEAT_SECONDS)
            try:
                worker_stop(worker_id=name)
            finally:
                connections.close_all()

        worker_threads = [
            threading.Thread(target=run, args=(w,), name=w.worker_id) for w in workers
        ]
        heartbeat = threading.Thread(target=beat_forever, name="heartbeat")
        heartbeat.start()
        threading.Thread(target=sweep_forever, name="job-sweep", daemon=True).start()
        for thread in worker_threads:
            thread.start()
        self.stdout.write(f"Worker {name} running {len(workers)} thread(s)")
        self.stdout.flush()
        while not signalled and any(thread.is_alive() for thread in worker_threads):
            time.sleep(0.2)
        if signalled:
            logger.warning("Stopping after the tasks under way (Ctrl-C again to force)")
        stop.set()  # the threads' waits end, and the heartbeat says this worker stopped
        for worker in workers:
            worker.running = False  # again: a thread restarting after an error set it back
        for thread in [*worker_threads, heartbeat]:
            thread.join()
        # Every task taken has ended (SIGTERM or Ctrl-C): nothing is left claimed.
        self.stdout.write(f"Worker {name} stopped")
