"""The simulator's HTTP side: serving and stopping, routing, latency, the reseller prefix and
the demo result video with range requests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from simulator_helpers import API, MakeSimulator, assert_error, client_for, create, query, text_body

from tasks_app.simulator import DEMO_RESULT_NAME, KlingSimulator, ManualClock, SimulatorConfig

# ---- server lifecycle ------------------------------------------------------------------------


class TestServer:
    def test_it_reports_its_url_with_the_real_port(self, simulator: KlingSimulator) -> None:
        assert simulator.url.startswith("http://127.0.0.1:")
        assert not simulator.url.endswith(":0")

    def test_it_works_as_a_context_manager_and_refuses_connections_once_stopped(
        self, fake_assets_dir: Path
    ) -> None:
        config = SimulatorConfig(assets_dir=fake_assets_dir)
        with KlingSimulator(config) as sim:
            url = sim.url
            client = client_for(sim)
            assert client.get(API).status_code == 200
        # The kept-alive connection is closed, and nobody listens any more.
        with pytest.raises(httpx.TransportError):
            client.get(API)
        client.close()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + API)

    def test_it_answers_an_unknown_path_with_1203(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            assert_error(client.get("/v1/videos/image2video"), 404, 1203)

    def test_it_answers_a_wrong_method_with_1202(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            assert_error(client.delete(API), 404, 1202)
            assert_error(client.post(f"{API}/123456789012345678", json={}), 404, 1202)

    def test_it_refuses_a_body_over_12_mb_and_keeps_the_connection_usable(
        self, simulator: KlingSimulator
    ) -> None:
        with client_for(simulator) as client:
            assert_error(client.post(API, content=b" " * (13 * 1024 * 1024)), 413, 1200)
            assert client.get(API).status_code == 200


class TestLatency:
    def test_a_slow_create_has_already_created_its_task_when_the_client_gives_up(
        self, make_simulator: MakeSimulator
    ) -> None:
        sim = make_simulator(create_latency=1.0)
        with client_for(sim) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.post(API, json=text_body(), timeout=0.2)
            assert len(client.get(API).json()["data"]) == 1

    def test_request_latency_slows_every_call(self, make_simulator: MakeSimulator) -> None:
        sim = make_simulator(request_latency=0.2)
        with client_for(sim) as client:
            started = time.monotonic()
            client.get(API)
        assert time.monotonic() - started >= 0.2


# ---- reseller prefix -------------------------------------------------------------------------


class TestResellerPrefix:
    def test_it_serves_the_api_under_the_prefix_and_bare(
        self, make_simulator: MakeSimulator
    ) -> None:
        sim = make_simulator(prefix="/kling")
        assert sim.api_url == f"{sim.url}/kling"
        with client_for(sim) as client:
            task_id = create(client)
            response = client.post(f"/kling{API}", json=text_body())
            assert response.json()["code"] == 0
            assert client.get(f"/kling{API}/{task_id}").json()["data"]["task_id"] == task_id
            assert len(client.get(f"/kling{API}").json()["data"]) == 2
            assert_error(client.get(f"/other{API}"), 404, 1203)

    def test_without_a_prefix_it_serves_only_bare_paths(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            assert_error(client.get(f"/kling{API}"), 404, 1203)


# ---- the result video ------------------------------------------------------------------------


class TestResultVideo:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, fake_assets_dir: Path) -> KlingSimulator:
        return make_simulator(assets_dir=fake_assets_dir)

    def _get(self, sim: KlingSimulator, **headers: str) -> httpx.Response:
        return httpx.get(f"{sim.url}/assets/{DEMO_RESULT_NAME}?task=1", headers=headers)

    def test_it_serves_the_whole_video_with_range_support_advertised(
        self, sim: KlingSimulator, fake_video: bytes
    ) -> None:
        response = self._get(sim)
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["accept-ranges"] == "bytes"
        assert response.content == fake_video

    @pytest.mark.parametrize(
        ("range_header", "start", "end"),
        [
            ("bytes=0-99", 0, 99),
            ("bytes=100-", 100, None),
            ("bytes=-50", -50, None),
            ("bytes=19990-999999", 19990, None),
        ],
    )
    def test_it_answers_a_range_request_with_206(
        self,
        sim: KlingSimulator,
        fake_video: bytes,
        range_header: str,
        start: int,
        end: int | None,
    ) -> None:
        expected = fake_video[start : None if end is None else end + 1]
        first = start % len(fake_video)
        response = self._get(sim, Range=range_header)
        assert response.status_code == 206
        assert response.content == expected
        assert response.headers["content-length"] == str(len(expected))
        assert response.headers["content-range"] == (
            f"bytes {first}-{first + len(expected) - 1}/{len(fake_video)}"
        )

    def test_it_answers_an_unsatisfiable_range_with_416(
        self, sim: KlingSimulator, fake_video: bytes
    ) -> None:
        response = self._get(sim, Range=f"bytes={len(fake_video)}-")
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{len(fake_video)}"

    def test_it_answers_a_head_request_without_a_body(
        self, sim: KlingSimulator, fake_video: bytes
    ) -> None:
        response = httpx.head(f"{sim.url}/assets/{DEMO_RESULT_NAME}")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(fake_video))
        assert response.content == b""

    def test_it_needs_no_authorization_and_plays_from_a_task_result(
        self, make_simulator: MakeSimulator, fake_assets_dir: Path, fake_video: bytes
    ) -> None:
        clock = ManualClock()
        sim = make_simulator(assets_dir=fake_assets_dir, now=clock)
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(60)
            url = query(client, task_id)["task_result"]["videos"][0]["url"]
        assert httpx.get(url).content == fake_video

    def test_result_urls_use_the_public_url_when_set(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, public_url="https://demo.example/sim/")
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(60)
            url = query(client, task_id)["task_result"]["videos"][0]["url"]
        assert url == f"https://demo.example/sim/assets/{DEMO_RESULT_NAME}?task={task_id}"

    @pytest.mark.parametrize("name", ["missing.mp4", "..%2Fsimulator.py", ".hidden"])
    def test_it_answers_404_for_anything_else(self, sim: KlingSimulator, name: str) -> None:
        assert httpx.get(f"{sim.url}/assets/{name}").status_code == 404
