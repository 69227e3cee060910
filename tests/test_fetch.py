"""The guard every outbound fetch goes through (tasks_app/fetch.py).

No test here opens a connection to an address off this machine. The guard's decisions on
other addresses are tested with a stubbed resolver and httpx.MockTransport (which connects to
nothing); the real-HTTP tests talk to a server on 127.0.0.1 through a transport that refuses,
and records, any connection elsewhere, so that even a broken guard cannot reach a private
network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import httpx
import pytest
from local_http import LocalServer, LoopbackOnly, serving, unused_port

from tasks_app.fetch import (
    FetchError,
    FetchPolicy,
    FetchReason,
    Resolver,
    fetch,
    parse_allowed_hosts,
    resolve,
)

VIDEO = bytes(range(256)) * 40

PRIVATE = [
    "10.0.0.1",
    "10.255.1.2",
    "172.16.5.4",
    "172.31.255.254",
    "192.168.1.10",
    "169.254.169.254",  # the cloud metadata service
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
    "100.64.0.1",  # carrier-grade NAT
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456:789a::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.215.14"]


def policy(
    *,
    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset(),
    max_bytes: int = 1_000_000,
    deadline_seconds: float = 10,
    read_timeout: float = 5,
) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=max_bytes,
        deadline_seconds=deadline_seconds,
        connect_timeout=2,
        read_timeout=read_timeout,
        allowed_hosts=allowed_hosts,
    )


class StubResolver:
    """Answers from a table, and remembers who asked: no DNS query leaves the machine."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Iterable[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


def no_lookups(host: str, port: int) -> Iterable[str]:
    raise AssertionError(f"looked up {host}, which the URL gives as an address")


class Recorder(httpx.MockTransport):
    """An httpx.MockTransport that keeps every request it was handed."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []

        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            if answer is not None:
                return answer(request)
            return httpx.Response(200, headers={"Content-Type": "video/mp4"}, content=VIDEO)

        super().__init__(handle)


def read(
    url: str,
    *,
    policy: FetchPolicy,
    resolver: Resolver = resolve,
    transport: httpx.BaseTransport | None = None,
) -> tuple[int, bytes]:
    with fetch(url, policy=policy, resolver=resolver, transport=transport) as response:
        return response.status_code, b"".join(response.iter_bytes())


def refusal(
    url: str,
    *,
    policy: FetchPolicy,
    resolver: Resolver = resolve,
    transport: httpx.BaseTransport | None = None,
) -> FetchError:
    with pytest.raises(FetchError) as caught:
        read(url, policy=policy, resolver=resolver, transport=transport)
    return caught.value


# --- The guard's decisions (no connection at all) ---------------------------------------------


class TestAddresses:
    @pytest.mark.parametrize("address", PRIVATE)
    def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
        self, address: str
    ) -> None:
        resolver = StubResolver({"files.example": [address]})
        transport = Recorder()

        err = refusal(
            "https://files.example/v.mp4", policy=policy(), resolver=resolver, transport=transport
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert err.permanent
        assert err.message["msg"].startswith("The link leads to a private or local network")
        assert err.message["args"] == {"host": "files.example"}
        assert resolver.asked == [("files.example", 443)]
        assert transport.requests == []

    @pytest.mark.parametrize("address", PRIVATE)
    def test_a_private_address_in_the_link_itself_is_refused(self, address: str) -> None:
        host = f"[{address}]" if ":" in address else address
        transport = Recorder()

        err = refusal(
            f"http://{host}:8080/v.mp4", policy=policy(), resolver=no_lookups, transport=transport
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert transport.requests == []

    def test_one_private_address_among_public_ones_is_enough_to_refuse(self) -> None:
        resolver = StubResolver({"files.example": ["93.184.215.14", "10.0.0.1"]})
        transport = Recorder()

        err = refusal(
            "https://files.example/v.mp4", policy=policy(), resolver=resolver, transport=transport
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert transport.requests == []

    @pytest.mark.parametrize("address", PUBLIC)
    def test_a_public_address_is_fetched_pinned_to_the_address_checked(self, address: str) -> None:
        transport = Recorder()

        status, body = read(
            "https://Files.Example/v.mp4?sig=1",
            policy=policy(),
            resolver=StubResolver({"files.example": [address]}),
            transport=transport,
        )

        assert (status, body) == (200, VIDEO)
        (request,) = transport.requests
        # The connection goes to the vetted address; the name stays in Host and TLS.
        assert request.url.host == address.removeprefix("::ffff:")
        assert request.url.path == "/v.mp4"
        assert request.url.query == b"sig=1"
        assert request.headers["Host"] == "files.example"
        assert request.extensions["sni_hostname"] == "files.example"

    def test_a_port_stays_in_the_host_header(self) -> None:
        transport = Recorder()

        read(
            "http://files.example:8080/v.mp4",
            policy=policy(),
            resolver=StubResolver({"files.example": ["93.184.215.14"]}),
            transport=transport,
        )

        (request,) = transport.requests
        assert str(request.url) == "http://93.184.215.14:8080/v.mp4"
        assert request.headers["Host"] == "files.example:8080"
        # SNI is for TLS only.
        assert "sni_hostname" not in request.extensions

    def test_the_name_is_resolved_once_so_a_changed_answer_changes_nothing(self) -> None:
        answers = iter([["93.184.215.14"], ["10.0.0.1"]])
        asked: list[str] = []

        def rebinding(host: str, port: int) -> Iterable[str]:
            asked.append(host)
            return next(answers)

        transport = Recorder()
        read(
            "https://files.example/v.mp4", policy=policy(), resolver=rebinding, transport=transport
        )

        assert asked == ["files.example"]
        assert [r.url.host for r in transport.requests] == ["93.184.215.14"]

    def test_a_name_that_does_not_resolve_is_not_found(self) -> None:
        err = refusal(
            "https://nowhere.example/v.mp4",
            policy=policy(),
            resolver=StubResolver({}),
            transport=Recorder(),
        )

        assert err.reason is FetchReason.NOT_FOUND
        assert err.message["args"] == {"host": "nowhere.example"}

    def test_a_name_with_no_address_is_not_found(self) -> None:
        err = refusal(
            "https://empty.example/v.mp4",
            policy=policy(),
            resolver=StubResolver({"empty.example": []}),
            transport=Recorder(),
        )

        assert err.reason is FetchReason.NOT_FOUND


class TestAllowedHosts:
    def test_an_allow_listed_host_and_port_may_be_private(self) -> None:
        transport = Recorder()
        allowed = parse_allowed_hosts(["minio.internal:9000"])

        status, _body = read(
            "http://minio.internal:9000/bucket/v.mp4",
            policy=policy(allowed_hosts=allowed),
            resolver=StubResolver({"minio.internal": ["10.0.0.5"]}),
            transport=transport,
        )

        assert status == 200
        (request,) = transport.requests
        # Still pinned to the address that was resolved.
        assert str(request.url) == "http://10.0.0.5:9000/bucket/v.mp4"
        assert request.headers["Host"] == "minio.internal:9000"

    def test_another_port_of_that_host_is_not_allowed(self) -> None:
        transport = Recorder()

        err = refusal(
            "http://minio.internal:9001/bucket/v.mp4",
            policy=policy(allowed_hosts=parse_allowed_hosts(["minio.internal:9000"])),
            resolver=StubResolver({"minio.internal": ["10.0.0.5"]}),
            transport=transport,
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert transport.requests == []

    def test_a_host_without_a_port_allows_every_port(self) -> None:
        transport = Recorder()

        read(
            "https://MinIO.internal:9443/v.mp4",
            policy=policy(allowed_hosts=parse_allowed_hosts(["minio.internal"])),
            resolver=StubResolver({"minio.internal": ["10.0.0.5"]}),
            transport=transport,
        )

        assert [r.url.host for r in transport.requests] == ["10.0.0.5"]

    def test_an_allow_listed_ipv6_address(self) -> None:
        transport = Recorder()

        read(
            "http://[fd00::5]:9000/v.mp4",
            policy=policy(allowed_hosts=parse_allowed_hosts(["[fd00::5]:9000"])),
            resolver=no_lookups,
            transport=transport,
        )

        assert [str(r.url) for r in transport.requests] == ["http://[fd00::5]:9000/v.mp4"]

    @pytest.mark.parametrize(
        "entry", ["http://minio", "minio/bucket", "user@minio", "minio:", "minio:99999", ""]
    )
    def test_an_entry_that_is_not_a_host_or_host_and_port_is_an_error(self, entry: str) -> None:
        with pytest.raises(ValueError):
            parse_allowed_hosts([entry])

    def test_a_malformed_setting_stops_start_up(self) -> None:
        env = {**os.environ, "MEDIA_FETCH_ALLOWED_HOSTS": "minio:9000,http://files"}
        result = subprocess.run(
            [sys.executable, "-c", "import lipsync_site.settings"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode != 0
        assert "MEDIA_FETCH_ALLOWED_HOSTS" in result.stderr
        assert "'http://files'" in result.stderr


class TestLinks:
    @pytest.mark.parametrize(
        "url",
        [
            "ftp://files.example/v.mp4",
            "file:///etc/passwd",
            "gopher://files.example/",
            "javascript:alert(1)",
            "data:video/mp4;base64,AAAA",
            "",
            "files.example/v.mp4",
            "http:///v.mp4",
        ],
    )
    def test_only_http_and_https_links_are_read(self, url: str) -> None:
        transport = Recorder()

        err = refusal(url, policy=policy(), resolver=no_lookups, transport=transport)

        assert err.reason is FetchReason.NOT_WEB_LINK
        assert err.permanent
        assert transport.requests == []

    def test_credentials_in_the_link_are_not_sent(self) -> None:
        transport = Recorder()

        read(
            "https://user:secret@files.example/v.mp4",
            policy=policy(),
            resolver=StubResolver({"files.example": ["93.184.215.14"]}),
            transport=transport,
        )

        (request,) = transport.requests
        assert "authorization" not in request.headers
        assert request.url.userinfo == b""
        assert "secret" not in str(request.url)

    def test_a_redirect_to_a_private_address_is_refused_without_following_it(self) -> None:
        transport = Recorder(
            lambda request: httpx.Response(302, headers={"Location": "http://internal.example/"})
        )
        resolver = StubResolver(
            {"files.example": ["93.184.215.14"], "internal.example": ["10.0.0.7"]}
        )

        err = refusal(
            "https://files.example/v.mp4", policy=policy(), resolver=resolver, transport=transport
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert err.message["args"] == {"host": "internal.example"}
        assert [r.url.host for r in transport.requests] == ["93.184.215.14"]

    def test_a_redirect_to_a_file_link_is_refused(self) -> None:
        transport = Recorder(
            lambda request: httpx.Response(301, headers={"Location": "file:///etc/passwd"})
        )

        err = refusal(
            "https://files.example/v.mp4",
            policy=policy(),
            resolver=StubResolver({"files.example": ["93.184.215.14"]}),
            transport=transport,
        )

        assert err.reason is FetchReason.NOT_WEB_LINK
        assert len(transport.requests) == 1


# --- Over real HTTP, on this machine -----------------------------------------------------------


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with serving(VIDEO, mode="missing") as local:
        yield local


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    """Another service on this machine, that nobody allow-listed."""
    with serving(VIDEO, mode="missing") as local:
        yield local


def local(
    server: LocalServer,
    *,
    max_bytes: int = 1_000_000,
    deadline_seconds: float = 10,
    read_timeout: float = 5,
) -> FetchPolicy:
    """A policy that allow-lists ``server`` (loopback is refused otherwise)."""
    return policy(
        allowed_hosts=parse_allowed_hosts(
            [f"127.0.0.1:{server.port}", f"files.test:{server.port}"]
        ),
        max_bytes=max_bytes,
        deadline_seconds=deadline_seconds,
        read_timeout=read_timeout,
    )


class TestOverHttp:
    def test_reads_an_allow_listed_local_server(self, server: LocalServer) -> None:
        status, body = read(f"{server.url}/video", policy=local(server))

        assert (status, body) == (200, VIDEO)
        ((path, headers),) = server.requests
        assert path == "/video"
        assert headers["Host"] == f"127.0.0.1:{server.port}"
        assert headers["Accept-Encoding"] == "identity"
        assert "Cookie" not in headers
        assert "Authorization" not in headers

    def test_a_local_server_that_is_not_allow_listed_is_refused(self, server: LocalServer) -> None:
        err = refusal(f"{server.url}/video", policy=policy())

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert server.hits == 0

    def test_a_name_is_connected_to_at_its_checked_address_and_sent_as_host(
        self, server: LocalServer, guard_rail: LoopbackOnly
    ) -> None:
        answers = iter([["127.0.0.1"], ["10.0.0.9"]])
        asked: list[str] = []

        def rebinding(host: str, port: int) -> Iterable[str]:
            asked.append(host)
            return next(answers)

        status, _body = read(
            f"http://files.test:{server.port}/video",
            policy=local(server),
            resolver=rebinding,
            transport=guard_rail,
        )

        assert status == 200
        assert asked == ["files.test"]
        assert server.requests[0][1]["Host"] == f"files.test:{server.port}"

    def test_a_redirect_into_a_private_range_is_refused_without_connecting(
        self, server: LocalServer, guard_rail: LoopbackOnly
    ) -> None:
        resolver = StubResolver({"internal.example": ["10.0.0.7"]})

        err = refusal(
            f"{server.url}/redirect?to=http://internal.example/secret",
            policy=local(server),
            resolver=resolver,
            transport=guard_rail,
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert resolver.asked == [("internal.example", 80)]
        assert server.hits == 1

    def test_a_redirect_to_the_metadata_service_is_refused(
        self, server: LocalServer, guard_rail: LoopbackOnly
    ) -> None:
        err = refusal(
            f"{server.url}/redirect?to=http://169.254.169.254/latest/meta-data/",
            policy=local(server),
            resolver=no_lookups,
            transport=guard_rail,
        )

        assert err.reason is FetchReason.PRIVATE_ADDRESS

    def test_a_redirect_to_another_local_service_is_refused(
        self, server: LocalServer, other_server: LocalServer
    ) -> None:
        err = refusal(f"{server.url}/redirect?to={other_server.url}/video", policy=local(server))

        assert err.reason is FetchReason.PRIVATE_ADDRESS
        assert other_server.hits == 0

    def test_three_redirects_are_followed(self, server: LocalServer) -> None:
        status, body = read(f"{server.url}/chain/3", policy=local(server))

        assert (status, body) == (200, VIDEO)
        assert [path for path, _ in server.requests] == [
            "/chain/3",
            "/chain/2",
            "/chain/1",
            "/chain/0",
        ]

    def test_a_fourth_redirect_is_not(self, server: LocalServer) -> None:
        err = refusal(f"{server.url}/chain/4", policy=local(server))

        assert err.reason is FetchReason.TOO_MANY_REDIRECTS
        assert err.message["args"] == {"count": 3}
        assert server.hits == 4

    def test_a_cookie_set_on_the_way_is_not_sent_after_the_redirect(
        self, server: LocalServer
    ) -> None:
        status, _body = read(f"{server.url}/sets-a-cookie", policy=local(server))

        assert status == 200
        assert [path for path, _ in server.requests] == ["/sets-a-cookie", "/video"]
        assert all("Cookie" not in headers for _, headers in server.requests)

    def test_a_server_slow_to_answer_is_given_up_on_at_the_deadline(
        self, server: LocalServer
    ) -> None:
        started = time.monotonic()

        err = refusal(
            f"{server.url}/slow", policy=local(server, deadline_seconds=0.5, read_timeout=5)
        )

        assert err.reason is FetchReason.TOO_SLOW
        assert time.monotonic() - started < 2

    def test_a_body_that_trickles_is_stopped_at_the_deadline(self, server: LocalServer) -> None:
        started = time.monotonic()

        # Each byte comes well within the read timeout; only the deadline stops it.
        err = refusal(
            f"{server.url}/trickle", policy=local(server, deadline_seconds=0.5, read_timeout=5)
        )

        assert err.reason is FetchReason.TOO_SLOW
        assert err.message["msg"].startswith("The download took too long")
        assert err.message["args"] == {"seconds": "0.5"}
        assert time.monotonic() - started < 2

    def test_an_endless_body_is_stopped_at_the_byte_cap(self, server: LocalServer) -> None:
        received = 0
        with (
            pytest.raises(FetchError) as caught,
            fetch(f"{server.url}/endless", policy=local(server, max_bytes=200_000)) as response,
        ):
            for chunk in response.iter_bytes():
                received += len(chunk)

        assert caught.value.reason is FetchReason.TOO_BIG
        assert received <= 200_000

    def test_a_declared_length_over_the_cap_is_refused_before_reading(
        self, server: LocalServer
    ) -> None:
        err = refusal(f"{server.url}/huge", policy=local(server))

        assert err.reason is FetchReason.TOO_BIG

    def test_a_refused_connection_says_so(self) -> None:
        port = unused_port()

        err = refusal(
            f"http://127.0.0.1:{port}/video",
            policy=policy(allowed_hosts=parse_allowed_hosts([f"127.0.0.1:{port}"])),
        )

        assert err.reason is FetchReason.REFUSED
        assert err.detail == "ConnectError"
        assert not err.permanent
