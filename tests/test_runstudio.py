"""``manage.py runstudio``: the one command per node. It replaces a worker that dies instead of
stopping the node, and runs only the web server or only the worker when asked."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodes import free_port, manage

ROOT = Path(__file__).resolve().parents[1]


class Node:
    """A ``runstudio`` process whose console is read line by line as it runs."""

    def __init__(self, env: dict[str, str], *options: str) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
            [sys.executable, "manage.py", "runstudio", *options],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def console(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, after: int = 0, seconds: float = 60) -> re.Match[str]:
        """The first console line from number ``after`` on that matches ``pattern``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.console}")

    def child_pids(self) -> dict[str, list[int]]:
        pids: dict[str, list[int]] = {}
        for line in self.lines:
            if found := re.search(r"started (\w+) \(pid (\d+)\)", line):
                pids.setdefault(found[1], []).append(int(found[2]))
        return pids

    def stop(self) -> int:
        """SIGTERM, as a process manager stops a node; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            # Whatever it started and did not stop (only if the test failed half-way).
            for pids in self.child_pids().values():
                for pid in pids:
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=10)
        return code


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is gone too.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def node_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A node's environment: its own database file and media folder, demo mode with the
    simulator on a free port, and an unbuffered console."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        "KLING_DEMO": "1",
        "KLING_SIMULATOR_URL": f"http://127.0.0.1:{free_port()}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SITE_URL": "",
        "PYTHONUNBUFFERED": "1",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    yield env


class TestRunstudioWorkerOnly:
    def test_a_killed_worker_is_replaced_and_the_console_says_so(self, node_env):
        node = Node(node_env, "--worker-only")
        try:
            first = int(node.wait_for(r"started worker \(pid (\d+)\)")[1])
            node.wait_for(r"Studio worker running")
            seen = len(node.lines)

            os.kill(first, signal.SIGKILL)

            node.wait_for(
                rf"worker \(pid {first}\) exited with code -9 .*starting a new one in 1 s",
                after=seen,
            )
            second = int(node.wait_for(r"started worker \(pid (\d+)\)", after=seen)[1])
            assert second != first
            assert not alive(first)
            assert alive(second)
            assert node.process.poll() is None  # the node carries on
        finally:
            code = node.stop()
        assert code == 0, node.console
        assert "Studio stopped." in node.console
        assert not alive(second)
        assert "started web" not in node.console
        assert "started simulator" in node.console  # demo mode: Kling stands in by the worker

    def test_a_worker_that_keeps_dying_is_restarted_after_a_growing_pause(self, node_env):
        node = Node(node_env, "--worker-only")
        try:
            pid = int(node.wait_for(r"started worker \(pid (\d+)\)")[1])
            pauses = []
            for _ in range(3):
                seen = len(node.lines)
                os.kill(pid, signal.SIGKILL)
                pauses.append(int(node.wait_for(r"starting a new one in (\d+) s", after=seen)[1]))
                pid = int(node.wait_for(r"started worker \(pid (\d+)\)", after=seen)[1])
        finally:
            code = node.stop()
        assert pauses == [1, 2, 4]
        assert code == 0, node.console


class TestRunstudioWebOnly:
    def test_it_serves_pages_and_starts_no_worker_nor_simulator(self, node_env):
        port = free_port()
        node = Node(node_env, "--web-only", "--port", str(port), "--web-workers", "1")
        try:
            node.wait_for(rf"Studio running on http://127.0.0.1:{port}/")
            health = None
            deadline = time.monotonic() + 60
            while health is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as answer:
                        health = answer.status
                except OSError:
                    time.sleep(0.2)  # gunicorn still starting
            assert health == 200
        finally:
            code = node.stop()
        assert code == 0, node.console
        assert "started web" in node.console
        assert "started worker" not in node.console
        assert "started simulator" not in node.console


class TestRunstudioOptions:
    def test_web_only_and_worker_only_together_are_refused(self, node_env):
        result = subprocess.run(
            [sys.executable, "manage.py", "runstudio", "--web-only", "--worker-only"],
            cwd=ROOT,
            env=node_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "not allowed with argument" in result.stderr
        assert "started" not in result.stdout
