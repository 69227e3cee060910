"""``/healthz``: what a load balancer asks each node, without logging in."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test import Client

ROOT = Path(__file__).resolve().parents[1]

ASK_HEALTH = """
from django.test import Client
answer = Client().get("/healthz")
print(answer.status_code, answer.content.decode())
"""


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestHealthz:
    def test_it_answers_200_without_a_login_when_the_database_and_storage_answer(
        self, client: Client, db
    ):
        answer = client.get("/healthz")

        assert answer.status_code == 200
        assert answer.json() == {"database": "ok", "storage": "ok", "status": "ok"}
        assert "no-cache" in answer["Cache-Control"]

    def test_a_load_balancer_may_ask_with_head_but_not_post(self, client: Client, db):
        assert client.head("/healthz").status_code == 200
        assert client.post("/healthz").status_code == 405

    def test_it_costs_one_trivial_query_and_writes_nothing_to_storage(
        self, client: Client, db, django_assert_num_queries, media_root: Path
    ):
        with django_assert_num_queries(1):
            assert client.get("/healthz").status_code == 200
        assert not media_root.exists() or not any(media_root.rglob("*"))

    def test_it_answers_503_naming_the_storage_when_media_root_is_not_a_folder(
        self, client: Client, db, settings, tmp_path: Path
    ):
        not_a_folder = tmp_path / "media-is-a-file"
        not_a_folder.write_text("not a folder")
        settings.MEDIA_ROOT = not_a_folder

        answer = client.get("/healthz")

        assert answer.status_code == 503
        assert answer.json() == {
            "database": "ok",
            "storage": "failing",
            "status": "failing",
            "failing": ["storage"],
        }

    def test_a_fresh_media_root_with_nothing_stored_yet_is_healthy(
        self, client: Client, db, settings, tmp_path: Path
    ):
        settings.MEDIA_ROOT = tmp_path / "not-made-yet"

        assert client.get("/healthz").status_code == 200
        assert not (tmp_path / "not-made-yet").exists()

    def test_it_answers_503_naming_the_database_when_it_does_not_answer(self, tmp_path: Path):
        # A node whose database is a PostgreSQL on a port where nothing listens, in its own
        # process: the studio as deployed, not a stand-in for our check.
        port = a_closed_port()
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://studio:s3cret-pw@127.0.0.1:{port}/studio",
            "MEDIA_ROOT": str(tmp_path / "media"),
        }
        result = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
            [sys.executable, "manage.py", "shell", "-c", ASK_HEALTH],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        status, body = result.stdout.strip().splitlines()[-1].split(" ", 1)

        assert status == "503", result.stdout + result.stderr
        assert json.loads(body) == {
            "database": "failing",
            "storage": "ok",
            "status": "failing",
            "failing": ["database"],
        }
        # What went wrong is logged on the node, never told to whoever asks.
        assert "s3cret-pw" not in body and str(port) not in body
        assert "database does not answer" in result.stderr

    def test_its_answer_holds_no_secrets(self, client: Client, db):
        body = client.get("/healthz").content.decode()

        assert body.startswith("{") and "ok" in body
        assert str(settings.SECRET_KEY) not in body
        assert str(settings.DATABASES["default"]["NAME"]) not in body


class TestHealthzWithABucket:
    """Media in an S3-compatible bucket (moto's server over HTTP, ``bucket`` in conftest)."""

    def test_it_answers_200_when_the_bucket_answers_and_writes_nothing_there(
        self, client: Client, db, bucket
    ):
        answer = client.get("/healthz")

        assert answer.status_code == 200
        assert answer.json()["storage"] == "ok"
        assert bucket.object_keys() == []

    def test_a_bucket_that_is_gone_is_named_as_the_failing_part(self, client: Client, db, bucket):
        assert client.get("/healthz").status_code == 200
        bucket.client.delete_bucket(Bucket=bucket.name)

        answer = client.get("/healthz")

        assert answer.status_code == 503
        assert answer.json()["failing"] == ["storage"]
        assert answer.json()["database"] == "ok"
        assert bucket.name not in answer.content.decode()
