"""Run a studio node in the foreground: web server, worker and (in demo mode) the simulator.

One command per node: ``--web-only`` or ``--worker-only`` runs just one of the two, for nodes
with one job each (see README, "Running on several machines").

Ctrl-C (or SIGTERM) stops all of them, the worker first, given time to finish the tasks in
hand. A worker that dies is replaced, and the console says so, after a pause that doubles
while it keeps dying soon after its start (so a worker that cannot start does not spin); if the
web server or the simulator dies, the others are stopped too, so a half-running node never
hides a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

# The pause before a dead worker is replaced: it doubles each time up to the most, and starts
# over once a worker has lived long enough to have got past its start.
WORKER_RESTART_FIRST_SECONDS = 1.0
WORKER_RESTART_MAX_SECONDS = 60.0
WORKER_SETTLED_SECONDS = 60.0


class Command(BaseCommand):
    help = "Run gunicorn, the background worker and, in demo mode, the Kling simulator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--web-workers", type=int, default=2)
        only = parser.add_mutually_exclusive_group()
        only.add_argument(
            "--web-only", action="store_true", help="Run the web server, not the worker."
        )
        only.add_argument(
            "--worker-only",
            action="store_true",
            help="Run the worker (and, in demo mode, the simulator), not the web server.",
        )

    def handle(
        self,
        *,
        port: str,
        host: str,
        web_workers: int,
        web_only: bool,
        worker_only: bool,
        **options,
    ) -> None:
        python = sys.executable
        commands: list[tuple[str, list[str]]] = []
        # The worker is what talks to Kling: the simulator stands in where it runs.
        if settings.KLING_DEMO and not web_only:
            sim = urlsplit(settings.KLING_SIMULATOR_URL)
            commands.append(
                (
                    "simulator",
                    [
                        python,
                        "-m",
                        "tasks_app.simulator",
                        "--host",
                        sim.hostname or "127.0.0.1",
                        "--port",
                        str(sim.port or 8765),
                        # Download uploaded videos from the studio as Kling does (see
                        # tasks_app.source_links), so a link that does not work fails here too.
                        "--fetch-sources",
                    ],
                )
            )
        if not worker_only:
            commands.append(
                (
                    "web",
                    [
                        python,
                        "-m",
                        "gunicorn",
                        "lipsync_site.wsgi",
                        "--bind",
                        f"{host}:{port}",
                        "--workers",
                        str(web_workers),
                        "--threads",
                        "4",
                        "--access-logfile",
                        "-",
                    ],
                )
            )
        if not web_only:
            commands.append(("worker", [python, "manage.py", "studio_worker"]))

        processes: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_args: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        # The worker links uploaded videos to the port served here (settings.DEMO_STUDIO_URL).
        env = {**os.environ, "PORT": str(port)}
        started_at: dict[str, float] = {}

        def start(name: str, command: list[str]) -> None:
            # Each child gets its own process group, so Ctrl-C reaches them only through us
            # and they stop in order.
            processes[name] = subprocess.Popen(command, start_new_session=True, env=env)  # noqa: S603
            started_at[name] = time.monotonic()
            self.stdout.write(f"started {name} (pid {processes[name].pid})")
            self.stdout.flush()

        for name, command in commands:
            start(name, command)
        if settings.KLING_DEMO and not web_only:
            self.stdout.write(
                self.style.WARNING("Demo mode: jobs go to the built-in Kling simulator.")
            )
        if worker_only:
            self.stdout.write(self.style.SUCCESS("Studio worker running (no web server here)."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Studio running on http://{host}:{port}/"))
        self.stdout.flush()

        exit_code = 0
        worker_command = dict(commands).get("worker")
        restart_pause = WORKER_RESTART_FIRST_SECONDS
        restart_at: float | None = None
        while not stopping:
            now = time.monotonic()
            for name, process in list(processes.items()):
                if process.poll() is None:
                    continue
                if name == "worker":
                    # The jobs it held are picked up again (the next worker's sweep); the node
                    # carries on serving.
                    lived = now - started_at[name]
                    if lived >= WORKER_SETTLED_SECONDS:
                        restart_pause = WORKER_RESTART_FIRST_SECONDS
                    self.stderr.write(
                        f"worker (pid {process.pid}) exited with code {process.returncode} "
                        f"after {lived:.0f} s; starting a new one in {restart_pause:.0f} s"
                    )
                    self.stderr.flush()
                    del processes[name]
                    restart_at = now + restart_pause
                    restart_pause = min(restart_pause * 2, WORKER_RESTART_MAX_SECONDS)
                    continue
                self.stderr.write(f"{name} exited with code {process.returncode}; stopping")
                exit_code = process.returncode or 1
                stopping = True
                break
            if not stopping and worker_command and restart_at is not None and now >= restart_at:
                restart_at = None
                start("worker", worker_command)
            time.sleep(0.3)

        # The worker first: it finishes the tasks in hand (each at most one call to Kling), or
        # is stopped hard after that long and its jobs are picked up again by the next one.
        for process in reversed(list(processes.values())):
            if process.poll() is None:
                process.terminate()
        grace = settings.KLING_CONNECT_TIMEOUT + settings.KLING_READ_TIMEOUT + 5
        deadline = time.monotonic() + grace
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        self.stdout.write("Studio stopped.")
        if exit_code:
            sys.exit(exit_code)
