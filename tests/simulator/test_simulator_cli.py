"""``python -m tasks_app.simulator``: the demo's own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from simulator_helpers import API, WEBHOOK_SECRET

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---- command line ----------------------------------------------------------------------------


class TestCommandLine:
    def test_it_serves_until_sigterm_and_exits_cleanly(self) -> None:
        env = {**os.environ, "SIM_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasks_app.simulator",
                "--port",
                "0",
                "--api-key",
                "cli-key",
                "--submitted-seconds",
                "0.1",
                "--processing-seconds",
                "0.1",
                "--webhook-secret-env",
                "SIM_TEST_WEBHOOK_SECRET",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(20, process.kill)  # never hang the suite on readline()
        watchdog.start()
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("Kling simulator listening on http://127.0.0.1:"), line
            url = line.rsplit(" ", 1)[1]
            response = httpx.get(url + API, headers={"Authorization": "Bearer cli-key"})
            assert response.json()["code"] == 0
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        _, stderr = process.communicate()
        assert "cli-key" not in stderr
        assert WEBHOOK_SECRET not in stderr

    def test_it_needs_no_django(self) -> None:
        # The simulator is a separate process in demo mode and a plain library in tests.
        code = (
            "import sys, tasks_app.simulator; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
        )
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert result.stdout.strip() == "[]"
