"""Callbacks: posted on each status change, in order, and signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time

import pytest
from simulator_helpers import (
    WEBHOOK_SECRET,
    CallbackReceiver,
    MakeSimulator,
    client_for,
    create,
    query,
    text_body,
    wait_until,
)

from tasks_app.simulator import ManualClock, sign_webhook

# ---- sign_webhook ----------------------------------------------------------------------------


class TestSignWebhook:
    def test_it_matches_the_reference_test_vector(self) -> None:
        body = (
            b'{"id":"1234567890","status":"succeeded","message":"",'
            b'"create_time":1781080778802,"update_time":1781080794151}'
        )
        signature = sign_webhook(
            "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=", "9876543210", 1781080794, body
        )
        assert signature == "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="

    def test_it_treats_a_secret_without_the_whsec_prefix_as_the_same_key(self) -> None:
        bare = "dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
        assert sign_webhook(bare, "1", 2, b"{}") == sign_webhook(f"whsec_{bare}", "1", 2, b"{}")

    def test_it_takes_unpadded_base64_as_the_same_key(self) -> None:
        padded = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
        assert sign_webhook(padded.rstrip("="), "1", 2, b"{}") == sign_webhook(
            padded, "1", 2, b"{}"
        )

    def test_a_secret_that_is_not_base64_is_read_as_base64_by_the_librarys_rule(self) -> None:
        # standardwebhooks skips what is not base64 and pads the rest: "hunter2" is the key
        # base64 "hunter2==" spells, not the text's own bytes.
        signed = b"1.2.{}"
        key = base64.b64decode("hunter2==")
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        text_keyed = hmac.new(b"hunter2", signed, hashlib.sha256).digest()
        assert sign_webhook("hunter2", "1", 2, b"{}") == f"v1,{expected}"
        assert sign_webhook("hunter2", "1", 2, b"{}") != (
            "v1," + base64.b64encode(text_keyed).decode()
        )

    @pytest.mark.parametrize(
        "secret", ["whsec_not base64!", "my-plain-secret", "whsec_%%%", "whsec_", ""]
    )
    def test_it_refuses_a_secret_the_library_cannot_use(self, secret: str) -> None:
        with pytest.raises(ValueError, match="base64"):
            sign_webhook(secret, "1", 2, b"{}")

    def test_its_refusal_does_not_quote_the_secret(self) -> None:
        with pytest.raises(ValueError) as refused:
            sign_webhook("my-plain-secret", "1", 2, b"{}")
        assert "plain" not in str(refused.value)
        assert "plain" not in str(refused.value.__cause__)


# ---- callbacks -------------------------------------------------------------------------------


class TestCallbacks:
    def test_it_posts_the_task_object_on_each_status_change(
        self, make_simulator: MakeSimulator, clock: ManualClock, receiver: CallbackReceiver
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            task_id = create(client, {**text_body(), "callback_url": receiver.url})
            clock.advance(sim.config.submitted_seconds)
            headers, processing, _ = receiver.next()
            clock.advance(sim.config.processing_seconds)
            _, done, _ = receiver.next()
            assert done == query(client, task_id)
        assert headers["content-type"] == "application/json"
        assert "webhook-signature" not in headers
        assert (processing["task_id"], processing["task_status"]) == (task_id, "processing")
        assert done["task_status"] == "succeed"
        assert receiver.received.empty()

    def test_it_calls_back_for_each_transition_in_order_when_time_jumps(
        self, make_simulator: MakeSimulator, clock: ManualClock, receiver: CallbackReceiver
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            create(client, {**text_body(), "callback_url": receiver.url})
        clock.advance(3600)
        statuses = [receiver.next()[1]["task_status"] for _ in range(2)]
        assert statuses == ["processing", "succeed"]
        wait_until(lambda: len(sim.callbacks) == 2)
        assert all(attempt.ok for attempt in sim.callbacks)

    def test_it_signs_callbacks_the_standard_webhooks_way(
        self, make_simulator: MakeSimulator, receiver: CallbackReceiver
    ) -> None:
        sim = make_simulator(webhook_secret=WEBHOOK_SECRET)
        with client_for(sim) as client:
            create(client, {**text_body(), "callback_url": receiver.url})
        key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
        seen_ids = set()
        for _ in range(2):
            headers, _, raw = receiver.next()
            msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
            assert abs(time.time() - int(timestamp)) < 300
            signed = f"{msg_id}.{timestamp}.".encode() + raw
            expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            assert f"v1,{expected}" in headers["webhook-signature"].split(" ")
            seen_ids.add(msg_id)
        assert len(seen_ids) == 2

    def test_it_ignores_a_receiver_that_cannot_be_reached(
        self,
        make_simulator: MakeSimulator,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        with socket.socket() as probe:  # a port that nobody listens on
            probe.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            task_id = create(client, {**text_body(), "callback_url": dead_url})
            clock.advance(3600)
            wait_until(lambda: len(sim.callbacks) == 2)
            assert query(client, task_id)["task_status"] == "succeed"
        assert not any(attempt.ok for attempt in sim.callbacks)
        assert "callback for task" in caplog.text

    def test_it_sends_nothing_without_a_callback_url(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            create(client)
        clock.advance(3600)
        time.sleep(0.1)
        assert sim.callbacks == []
