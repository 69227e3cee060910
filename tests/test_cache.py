"""The cache ``CACHE_URL`` selects, and what the studio keeps in it holding across nodes.

A "node" here is a cache client of its own made from the settings, as each web process makes
one: requests and calls inside ``on_node(...)`` use that client only. With Redis (a real one,
``TEST_REDIS_URL``, which scripts/with-redis provides) two nodes share what they cache; with
the default per-process cache they do not, which the controls beside each test show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from factories import TEXT_FORM
from local_http import serving
from media_files import make_video

from lipsync_site.env import LOCAL_CACHE, REDIS_CACHE, envcache
from tasks_app import auth_views, source_check
from tasks_app.models import Job

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def redis_url() -> str:
    """A real Redis; in CI its absence is a failure, elsewhere a skip that says why."""
    url = os.environ.get("TEST_REDIS_URL", "")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("TEST_REDIS_URL is not set: run the tests under scripts/with-redis")
    pytest.skip("needs Redis: run under scripts/with-redis (it sets TEST_REDIS_URL)")


@pytest.fixture
def shared(redis_url: str, monkeypatch) -> Iterator[dict[str, Any]]:
    """The cache settings every node gets from ``CACHE_URL=<the test Redis>``, under a key
    prefix of this test's own (other test runs may share the Redis); its keys are deleted after."""
    monkeypatch.setenv("CACHE_URL", redis_url)
    prefix = f"studio-test-{uuid.uuid4().hex}"
    yield envcache("CACHE_URL") | {"KEY_PREFIX": prefix}
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def per_process(node: str) -> dict[str, Any]:
    """The default cache, as the process of ``node`` has it: its own."""
    return {"BACKEND": LOCAL_CACHE, "LOCATION": f"node-{node}-{uuid.uuid4().hex}"}


@contextmanager
def on_node(config: dict[str, Any]) -> Iterator[BaseCache]:
    """Run the block as a node whose default cache is made from ``config`` (a new client)."""
    with override_settings(CACHES={"default": config}):
        yield caches["default"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("clip")
    return make_video(folder / "face.mp4", seconds=3, width=480, height=360).read_bytes()


@pytest.fixture
def small_limits(settings) -> None:
    settings.KLING_VIDEO_MIN_SIDE = 240
    settings.KLING_DEMO = True


class TestCacheUrl:
    def test_unset_or_empty_gives_each_process_its_own_cache(self, monkeypatch):
        monkeypatch.delenv("CACHE_URL", raising=False)
        assert envcache("CACHE_URL") == {"BACKEND": LOCAL_CACHE}
        monkeypatch.setenv("CACHE_URL", "  ")
        assert envcache("CACHE_URL") == {"BACKEND": LOCAL_CACHE}

    @pytest.mark.parametrize(
        "url",
        ["redis://127.0.0.1:6379/0", "redis://:pw@cache.internal:6379/2", "rediss://cache:6380"],
    )
    def test_a_redis_url_gives_djangos_redis_cache_at_that_url(self, monkeypatch, url):
        monkeypatch.setenv("CACHE_URL", url)
        assert envcache("CACHE_URL") == {"BACKEND": REDIS_CACHE, "LOCATION": url}

    @pytest.mark.parametrize(
        "url",
        ["memcached://127.0.0.1:11211", "http://:hunter2@cache:6379", "localhost:6379", "redis://"],
    )
    def test_anything_else_stops_start_up_saying_what_is_accepted(self, monkeypatch, url):
        monkeypatch.setenv("CACHE_URL", url)
        with pytest.raises(ImproperlyConfigured) as refused:
            envcache("CACHE_URL")
        message = str(refused.value)
        assert "CACHE_URL must be a redis:// or rediss:// URL" in message
        assert "hunter2" not in message  # a password in a mistyped URL is not repeated

    def test_the_studio_does_not_start_with_a_bad_cache_url(self, tmp_path):
        env = {**os.environ, "CACHE_URL": "memcached://127.0.0.1:11211"}
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "CACHE_URL must be a redis:// or rediss:// URL" in result.stderr

    def test_with_a_redis_url_the_studio_caches_in_that_redis(self, tmp_path, redis_url):
        env = {**os.environ, "CACHE_URL": redis_url}
        key = f"studio-test-{uuid.uuid4().hex}"
        script = (
            "from django.core.cache import caches; "
            f"caches['default'].set({key!r}, 'from another process', 30); "
            "print(type(caches['default']).__name__)"
        )
        result = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip().splitlines()[-1] == "RedisCache"
        client = redis.Redis.from_url(redis_url)
        try:
            stored = client.get(f":1:{key}")  # Django's key: prefix (none), version, key
            assert stored is not None and b"from another process" in stored
        finally:
            client.delete(f":1:{key}")
            client.close()


class TestSharedAcrossNodes:
    def test_what_one_node_caches_another_reads(self, shared):
        with on_node(shared) as node_a:
            node_a.set("greeting", {"from": "A"}, 60)
        with on_node(shared) as node_b:
            assert node_b is not node_a
            assert node_b.get("greeting") == {"from": "A"}
        with on_node(per_process("c")) as node_c:
            assert node_c.get("greeting") is None

    def test_the_password_reset_limit_counts_requests_made_on_every_node(
        self, client, db, settings, shared, mailoutbox
    ):
        settings.PASSWORD_RESET_ENABLED = True
        settings.PASSWORD_RESETS_PER_HOUR = 3
        email = {"email": "someone@example.com"}
        answers = []
        for config in [shared, shared, shared, shared]:  # A, B, A, B: a new client each time
            with on_node(config):
                answers.append(client.post(reverse("password_reset"), email).status_code)

        assert answers == [302, 302, 302, 200]

    def test_with_a_cache_in_each_process_every_node_counts_on_its_own(
        self, client, db, settings, mailoutbox
    ):
        # Why CACHE_URL is needed on several nodes: the same requests are not stopped.
        settings.PASSWORD_RESET_ENABLED = True
        settings.PASSWORD_RESETS_PER_HOUR = 3
        nodes = [per_process("a"), per_process("b")]
        answers = []
        for config in [nodes[0], nodes[1], nodes[0], nodes[1]]:
            with on_node(config):
                answers.append(
                    client.post(reverse("password_reset"), {"email": "x@example.com"}).status_code
                )

        assert answers == [302, 302, 302, 302]

    def test_the_reset_counter_is_exact_when_many_nodes_count_at_once(self, shared):
        # Each thread has its own client (Django's caches are per thread): 8 nodes at once.
        key = "reset-email:race@example.com"
        seen: list[int] = []
        lock = threading.Lock()

        def count() -> None:
            for _ in range(25):
                number = auth_views._count_reset(key)
                with lock:
                    seen.append(number)

        with on_node(shared):
            threads = [threading.Thread(target=count) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        assert sorted(seen) == list(range(1, 201))

    def test_a_linked_videos_facts_checked_on_one_node_are_reused_on_another(
        self, shared, settings, clip, small_limits
    ):
        with serving(clip) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            url = f"{server.url}/video/clip.mp4"
            with on_node(shared):
                on_a = source_check.video_facts_of_link(url=url)
            fetched = server.hits
            with on_node(shared):
                on_b = source_check.video_facts_of_link(url=url)
            reused = server.hits
            with on_node(per_process("c")):
                on_c = source_check.video_facts_of_link(url=url)

            assert fetched > 0
            assert reused == fetched  # B read nothing: A's facts came through Redis
            assert server.hits > reused  # a node with its own cache fetches again
        assert on_a == on_b == on_c
        assert (on_b.width, on_b.height, on_b.face_found) == (480, 360, True)

    def test_a_staged_upload_is_known_on_another_node_and_read_from_storage_when_forgotten(
        self, shared, clip, small_limits, media_root
    ):
        upload = SimpleUploadedFile("holiday.mp4", clip, content_type="video/mp4")
        with on_node(shared):
            facts = source_check.video_facts_of_upload(upload=upload)
            staged = source_check.video_stage(upload=upload, facts=facts)
        with on_node(shared):
            on_b = source_check.video_facts_of_staged(staged=staged)
        # A node that never saw the upload measures the stored file (storage, not a local path).
        with on_node(per_process("c")) as node_c:
            on_c = source_check.video_facts_of_staged(staged=staged)
            assert node_c.get(source_check._key("staged", staged.name)) == on_c

        assert on_b == facts
        assert (on_c.width, on_c.height, on_c.duration) == (
            facts.width,
            facts.height,
            facts.duration,
        )
        assert on_c.size == len(clip)


@pytest.mark.django_db
class TestSubmissionLimitAcrossNodes:
    def test_jobs_started_on_two_nodes_count_against_one_limit(self, alice, settings):
        # Counted in the database, so nodes with caches of their own still share it.
        settings.SUBMISSIONS_PER_MINUTE = 4
        nodes = [per_process("a"), per_process("b")]
        answers = []
        for n in range(5):
            with on_node(nodes[n % 2]):
                data = TEXT_FORM | {"text": f"Line {n}"}
                answers.append(alice.post(reverse("tasks:create"), data))

        assert [a.status_code for a in answers] == [302, 302, 302, 302, 400]
        assert "You have started 4 lip-syncs in the last minute" in answers[4].content.decode()
        assert Job.objects.count() == 4
