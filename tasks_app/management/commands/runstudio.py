"""Run the whole studio in the foreground: web server, worker and (in demo mode) the simulator.

Ctrl-C (or SIGTERM) stops all of them; if one of them dies, the others are stopped too, so a
half-running studio never hides a failure.
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


class Command(BaseCommand):
    help = "Run gunicorn, the background worker and, in demo mode, the Kling simulator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *, port: str, host: str, web_workers: int, **options) -> None:
        python = sys.executable
        commands: list[tuple[str, list[str]]] = []
        if settings.KLING_DEMO:
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
        for name, command in commands:
            # Each child gets its own process group, so Ctrl-C reaches them only through us
            # and they stop in order.
            processes[name] = subprocess.Popen(command, start_new_session=True, env=env)  # noqa: S603
            self.stdout.write(f"started {name} (pid {processes[name].pid})")
        if settings.KLING_DEMO:
            self.stdout.write(
                self.style.WARNING("Demo mode: jobs go to the built-in Kling simulator.")
            )
        self.stdout.write(self.style.SUCCESS(f"Studio running on http://{host}:{port}/"))

        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with code {process.returncode}; stopping")
                    exit_code = process.returncode or 1
                    stopping = True
                    break
            time.sleep(0.3)

        for process in reversed(list(processes.values())):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        self.stdout.write("Studio stopped.")
        if exit_code:
            sys.exit(exit_code)
