"""Every outbound fetch of a link someone else gave the studio (Kling's result files now).

Such a link may point anywhere, including at the studio's own network: a metadata service, a
database, an admin page bound to loopback. So each fetch goes through one guard:

- only http and https; the host is resolved once, and every address it resolves to must be a
  public one (a name with one public and one private address is refused), unless the host is
  allow-listed;
- the connection goes to the address that was checked, not to a second lookup of the name: the
  request's URL carries the vetted IP, while the ``Host`` header, the TLS SNI name and the
  certificate check keep the real name (httpcore's ``sni_hostname`` extension). A DNS answer
  that changes between the check and the connection (DNS rebinding) therefore changes nothing;
- redirects are followed by hand, at most ``max_redirects``, each target checked like the first;
- connect and read timeouts, plus a deadline on the whole fetch (monotonic clock), and a byte
  cap that stops the transfer. The deadline is checked as the body's pieces arrive, and each
  timeout is cut to what is left of it; a server that falls silent mid-body is cut off by the
  read timeout, so a fetch ends at the latest one read timeout after its deadline;
- no cookies, no credentials (user:password in a link is dropped), no proxy from the
  environment (a proxy would connect to the name itself, undoing the pinning).

The guard is plain Python (limits and allow-list are passed in) so it can be tested without
Django's settings; :func:`policy_from_settings` reads them for the studio.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.utils.translation import gettext_noop

from tasks_app.wording import Message, say

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# ``resolver(host, port)`` -> the addresses the host resolves to, as text.
Resolver = Callable[[str, int], Iterable[str]]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64's well-known prefix: on a network with a NAT64 gateway, 64:ff9b::a00:1 reaches
# 10.0.0.1, so the IPv4 address inside must pass the same check.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class FetchReason(StrEnum):
    NOT_WEB_LINK = "not_web_link"
    NOT_FOUND = "not_found"
    PRIVATE_ADDRESS = "private_address"
    REFUSED = "refused"
    TOO_SLOW = "too_slow"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_BIG = "too_big"
    FAILED = "failed"


class FetchError(Exception):
    """A link the studio would not or could not read, with the reason in plain words.

    ``message`` is a :func:`~tasks_app.wording.say` message, translated when it is shown.
    ``permanent`` marks what trying again cannot fix (a private address, a link that is not a
    web link). ``detail`` names the network error behind it, if any (``ConnectError``).
    """

    def __init__(
        self, reason: FetchReason, message: Message, *, permanent: bool = False, detail: str = ""
    ) -> None:
        # English without Django's translation machinery, so the guard works outside it.
        super().__init__(message["msg"].format(**message["args"]))
        self.reason = reason
        self.message = message
        self.permanent = permanent
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """The limits of one fetch. ``allowed_hosts`` holds ``(host, port)`` pairs whose links
    may resolve to private addresses; a port of ``None`` allows every port of that host."""

    max_bytes: int
    deadline_seconds: float
    connect_timeout: float = 5
    read_timeout: float = 30
    max_redirects: int = 3
    allowed_hosts: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)


def parse_allowed_hosts(entries: Iterable[str]) -> frozenset[tuple[str, int | None]]:
    """``["files.internal:9000", "minio", "[fd00::5]:9000"]`` -> ``(host, port)`` pairs.

    Raises ValueError on an entry that is not ``host`` or ``host:port``.
    """
    allowed: set[tuple[str, int | None]] = set()
    for entry in entries:
        entry = entry.strip()
        parts = urlsplit(f"//{entry}")
        # urlsplit, not httpx: httpx drops an explicit :80 and :443, which here mean a port.
        port = parts.port  # raises ValueError for a port that is not one
        if not parts.hostname or parts.netloc != entry or "@" in entry or entry.endswith(":"):
            raise ValueError(f"not a host or host:port: {entry!r}")
        # httpx's spelling of the host (IDNA, no brackets), as the fetched URLs will have it.
        try:
            host = _web_url(f"http://{entry}").raw_host.decode("ascii").lower()
        except FetchError:
            raise ValueError(f"not a host or host:port: {entry!r}") from None
        allowed.add((host, port))
    return frozenset(allowed)


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, as the system's resolver gives them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos if isinstance(info[4][0], str)]


def is_public(address: IPAddress) -> bool:
    """Whether the studio may connect to ``address`` for a link it was given."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 address; a mapped one
        # (::ffff:a.b.c.d) is only that IPv4 address, whatever Python says of the IPv6 form.
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class FetchedResponse:
    """The final answer of a fetch: its status and headers, and its body within the limits."""

    def __init__(
        self, response: httpx.Response, *, url: str, policy: FetchPolicy, ends: float
    ) -> None:
        self._response = response
        self._policy = policy
        self._ends = ends
        self.url = url

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self._response.headers

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives; raises FetchError past the byte cap or the deadline."""
        limit = self._policy.max_bytes
        declared = self.headers.get("content-length", "")
        # int() refuses more than 4300 digits, and no body we accept has 19 of them.
        digits = declared.isascii() and declared.isdigit()
        if digits and (len(declared) > 18 or int(declared) > limit):
            raise _too_big()
        received = 0
        try:
            # No chunk_size: a fixed size would wait for that many bytes from a server that
            # trickles, and the deadline is checked between the pieces as they come.
            for chunk in self._response.iter_bytes():
                received += len(chunk)
                if received > limit:
                    raise _too_big()
                if time.monotonic() > self._ends:
                    raise _past_deadline(self._policy)
                yield chunk
        except httpx.HTTPError as err:
            raise _network_error(err) from None


@contextmanager
def fetch(
    url: str,
    *,
    policy: FetchPolicy,
    resolver: Resolver = resolve,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[FetchedResponse]:
    """GET ``url`` through the guard; yields the answer once no redirect is left to follow.

    The caller judges the status and type; reading the body enforces the byte cap and the
    deadline. Every refusal and network failure is a :class:`FetchError`. ``transport`` is
    for tests (httpx.MockTransport); by default a fresh HTTPTransport that verifies TLS.
    """
    ends = time.monotonic() + policy.deadline_seconds
    with httpx.Client(
        transport=transport or httpx.HTTPTransport(),
        follow_redirects=False,
        trust_env=False,
    ) as client:
        response, final_url = _follow(client, _web_url(url), policy, resolver, ends)
        try:
            yield FetchedResponse(response, url=str(final_url), policy=policy, ends=ends)
        finally:
            response.close()


def _follow(
    client: httpx.Client,
    url: httpx.URL,
    policy: FetchPolicy,
    resolver: Resolver,
    ends: float,
) -> tuple[httpx.Response, httpx.URL]:
    redirects = 0
    while True:
        response = _send(client, url, _vetted_addresses(url, policy, resolver), policy, ends)
        location = response.headers.get("location")
        if response.status_code not in REDIRECTS or not location:
            return response, url
        response.close()
        if redirects == policy.max_redirects:
            raise FetchError(
                FetchReason.TOO_MANY_REDIRECTS,
                say(
                    gettext_noop("The link redirected more than {count} times."),
                    count=policy.max_redirects,
                ),
            )
        redirects += 1
        try:
            url = _web_url(url.join(location))
        except httpx.InvalidURL:
            raise _not_web_link() from None


def _web_url(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise _not_web_link() from None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.raw_host:
        raise _not_web_link()
    # The fragment never goes on the wire; user:password would be sent as a Basic header.
    return parsed.copy_with(username=None, password=None, fragment=None)


def _vetted_addresses(url: httpx.URL, policy: FetchPolicy, resolver: Resolver) -> list[IPAddress]:
    host = url.raw_host.decode("ascii").lower()
    port = url.port or DEFAULT_PORTS[url.scheme]
    try:
        addresses = [_unmapped(ipaddress.ip_address(host))]
    except ValueError:
        try:
            found = resolver(host, port)
            addresses = list(dict.fromkeys(_unmapped(ipaddress.ip_address(a)) for a in found))
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise FetchError(
                FetchReason.NOT_FOUND,
                say(gettext_noop("The link's server name ({host}) was not found."), host=host),
            ) from None
    allowed = (host, port) in policy.allowed_hosts or (host, None) in policy.allowed_hosts
    if not allowed and not all(is_public(address) for address in addresses):
        raise FetchError(
            FetchReason.PRIVATE_ADDRESS,
            say(
                gettext_noop(
                    "The link leads to a private or local network address ({host}), which "
                    "the studio does not read."
                ),
                host=host,
            ),
            permanent=True,
        )
    return addresses


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:a.b.c.d is a.b.c.d; connecting to it as IPv4 works where IPv6 sockets do not.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _send(
    client: httpx.Client,
    url: httpx.URL,
    addresses: Sequence[IPAddress],
    policy: FetchPolicy,
    ends: float,
) -> httpx.Response:
    host = url.raw_host.decode("ascii")
    refused: httpx.ConnectError | None = None
    for address in addresses:
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise _past_deadline(policy)
        read = min(policy.read_timeout, remaining)
        timeout = httpx.Timeout(
            connect=min(policy.connect_timeout, remaining), read=read, write=read, pool=remaining
        )
        extensions: dict[str, object] = {"timeout": timeout.as_dict()}
        if url.scheme == "https":
            # The certificate is checked against the name, though we connect to the address.
            extensions["sni_hostname"] = host
        request = httpx.Request(
            "GET",
            url.copy_with(host=str(address)),
            headers={
                "Host": url.netloc.decode("ascii"),
                "User-Agent": "LipSyncStudio/1",
                "Accept": "*/*",
                # Video does not compress; identity keeps the byte cap about real bytes.
                "Accept-Encoding": "identity",
            },
            extensions=extensions,
        )
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as err:
            # The name's next address may answer (an IPv6 address on an IPv4-only network).
            refused = err
        except httpx.HTTPError as err:
            raise _network_error(err) from None
    assert refused is not None
    raise _network_error(refused)


def _network_error(err: httpx.HTTPError) -> FetchError:
    kind = type(err).__name__
    if isinstance(err, httpx.TimeoutException):
        return FetchError(
            FetchReason.TOO_SLOW,
            say(gettext_noop("The link's server was too slow to answer.")),
            detail=kind,
        )
    if isinstance(err, httpx.ConnectError):
        return FetchError(
            FetchReason.REFUSED,
            say(gettext_noop("The studio could not connect to the link's server.")),
            detail=kind,
        )
    return FetchError(
        FetchReason.FAILED,
        say(gettext_noop("The download from the link failed ({kind})."), kind=kind),
        detail=kind,
    )


def _past_deadline(policy: FetchPolicy) -> FetchError:
    return FetchError(
        FetchReason.TOO_SLOW,
        say(
            gettext_noop("The download took too long: the studio stops after {seconds} seconds."),
            seconds=f"{policy.deadline_seconds:g}",
        ),
    )


def _too_big() -> FetchError:
    return FetchError(FetchReason.TOO_BIG, say(gettext_noop("The file is larger than allowed.")))


def _not_web_link() -> FetchError:
    return FetchError(
        FetchReason.NOT_WEB_LINK,
        say(gettext_noop("The link is not a web link (only http and https links are read).")),
        permanent=True,
    )


def policy_from_settings(*, max_bytes: int, deadline_seconds: float) -> FetchPolicy:
    """The studio's policy: Kling's timeouts, ``MEDIA_FETCH_ALLOWED_HOSTS``, and in demo mode
    the simulator (it serves the demo's result files from this machine)."""
    allowed = set(parse_allowed_hosts(settings.MEDIA_FETCH_ALLOWED_HOSTS))
    if settings.KLING_DEMO and settings.KLING_SIMULATOR_URL:
        simulator = httpx.URL(settings.KLING_SIMULATOR_URL)
        port = simulator.port or DEFAULT_PORTS.get(simulator.scheme)
        allowed.add((simulator.raw_host.decode("ascii").lower(), port))
    return FetchPolicy(
        max_bytes=max_bytes,
        deadline_seconds=deadline_seconds,
        connect_timeout=settings.KLING_CONNECT_TIMEOUT,
        read_timeout=settings.KLING_READ_TIMEOUT,
        allowed_hosts=frozenset(allowed),
    )
