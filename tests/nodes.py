"""Studio nodes as real processes, for tests that run the studio on "several machines".

A ``Node`` is one process (a web server or a worker) started from ``manage.py`` with an
environment of its own, its console written to a log file that a failing test shows. A
``Person`` is a browser over plain HTTP (httpx): it logs in through the login form, posts the
job form, and keeps its cookies whichever node it talks to, as behind a load balancer.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manage(env: Mapping[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>`` to its end with ``env``, as a node's shell would; fails the
    test when it fails."""
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        **kwargs,
    )


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """The ``DATABASE_URL`` of a PostgreSQL connection's settings (the test database's, so
    that processes outside the test see what it committed)."""
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{quote(str(settings_dict['NAME']), safe='')}"


def files_under(root: Path) -> list[Path]:
    """Every file below ``root`` (none when it does not exist)."""
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    seconds: float,
    every: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something true, and return that; fail after
    ``seconds`` saying ``what`` was awaited (and ``explain()``, when given, for the state)."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            state = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"waited {seconds:g} s for {what}{state}")
        time.sleep(every)


class Node:
    """One studio process: ``manage.py <args>`` with ``env``, its console in ``log_path``.

    It runs in a process group of its own, so that stopping it stops whatever it started
    (runstudio's gunicorn and gunicorn's workers) and nothing it started outlives the test.
    """

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path):
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own manage.py, fixed arguments
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def console(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_line(self, pattern: str, *, seconds: float = 60) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited with code {self.process.returncode}:\n{self.console()}"
                )
            return re.search(pattern, self.console())

        return wait_for(
            f"{pattern!r} on the console of {self.name}",
            found,
            seconds=seconds,
            explain=self.console,
        )

    def kill(self) -> None:
        """SIGKILL, as when a machine dies: the process gets no chance to tidy up."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, *, seconds: float = 30) -> int | None:
        """SIGTERM, then SIGKILL for the whole group after ``seconds``; the exit code."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=seconds)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left of the group
        if self.running:
            self.process.wait(timeout=10)
        return self.process.returncode

    def tail(self, lines: int = 80) -> str:
        text = self.console().splitlines()[-lines:]
        return f"----- {self.name} (pid {self.pid}, {' '.join(self.args)}) -----\n" + "\n".join(
            text
        )


def web_is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Person:
    """Someone with a browser: one cookie jar, whichever node each request goes to."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def csrf_token(self, node_url: str) -> str:
        """The CSRF cookie's secret (Django takes it as the form's token as well), asking a
        page for it first when the browser has none yet."""
        if "csrftoken" not in self.http.cookies:
            self.http.get(f"{node_url}/accounts/login/")
        return str(self.http.cookies["csrftoken"])

    def log_in(self, node_url: str, *, username: str, password: str) -> None:
        answer = self.http.post(
            f"{node_url}/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.csrf_token(node_url),
            },
        )
        assert answer.status_code == 302, (answer.status_code, answer.text[:2000])
        assert "sessionid" in self.http.cookies

    def submit_job(
        self, node_url: str, form: Mapping[str, str], files: dict[str, Any] | None = None
    ) -> int:
        """Post the job form; the new job's id (from where the studio sends the person)."""
        answer = self.http.post(
            f"{node_url}/tasks/new/",
            data={**form, "csrfmiddlewaretoken": self.csrf_token(node_url)},
            files=files,
        )
        assert answer.status_code == 302, (answer.status_code, answer.text[:4000])
        found = re.fullmatch(r"/tasks/(\d+)/", answer.headers["location"])
        assert found, answer.headers["location"]
        return int(found[1])

    def check_job_form(
        self, node_url: str, form: Mapping[str, str], files: dict[str, Any] | None = None
    ) -> str:
        """Post the job form to its check, as the page does (htmx) once a video is picked;
        the token of the upload the studio kept, which the form then carries instead."""
        answer = self.http.post(
            f"{node_url}/tasks/new/check/",
            data={**form, "csrfmiddlewaretoken": self.csrf_token(node_url)},
            files=files,
            headers={"HX-Request": "true"},
        )
        assert answer.status_code == 200, (answer.status_code, answer.text[:4000])
        found = re.search(r'name="video_staged" id="id_video_staged" value="([^"]+)"', answer.text)
        assert found, f"the check kept no upload:\n{answer.text[:4000]}"
        return found[1]
