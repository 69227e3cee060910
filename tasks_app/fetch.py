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

import io
import ipaddress
import re
import socket
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.utils.translation import gettext_noop

from tasks_app.wording import Message, say

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    client: httpx.Client | None = None,
) -> Iterator[FetchedResponse]:
    """GET ``url`` through the guard; yields the answer once no redirect is left to follow.

    The caller judges the status and type; reading the body enforces the byte cap and the
    deadline. Every refusal and network failure is a :class:`FetchError`. ``transport`` is
    for tests (httpx.MockTransport); by default a fresh HTTPTransport that verifies TLS.
    ``headers`` are added to the request (a ``Range``); ``deadline`` (a monotonic moment)
    replaces the policy's own when several requests share one, and ``client`` (made by
    :func:`_client`) lets them share connections.
    """
    ends = time.monotonic() + policy.deadline_seconds if deadline is None else deadline
    with ExitStack() as stack:
        if client is None:
            client = stack.enter_context(_client(transport))
        response, final_url = _follow(
            client, _web_url(url), policy, resolver, ends, dict(headers or {})
        )
        try:
            yield FetchedResponse(response, url=str(final_url), policy=policy, ends=ends)
        finally:
            response.close()


def _client(transport: httpx.BaseTransport | None) -> httpx.Client:
    return httpx.Client(
        transport=transport or httpx.HTTPTransport(),
        follow_redirects=False,
        trust_env=False,
    )


def _follow(
    client: httpx.Client,
    url: httpx.URL,
    policy: FetchPolicy,
    resolver: Resolver,
    ends: float,
    headers: dict[str, str],
) -> tuple[httpx.Response, httpx.URL]:
    redirects = 0
    while True:
        addresses = _vetted_addresses(url, policy, resolver)
        response = _send(client, url, addresses, policy, ends, headers)
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
    headers: dict[str, str],
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
                # The caller's first, so that none of them can replace the guard's own.
                **headers,
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


BLOCK_SIZE = 256 * 1024
CACHED_BLOCKS = 16
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18})")


class RemoteFile(io.RawIOBase):
    """A link read as a seekable, read-only file, so PyAV can probe it without downloading it.

    Where the server answers ranges, reads become ``Range`` requests of ``block_size`` bytes
    (the last ``cached_blocks`` kept), so an MP4 whose index is at the start costs a few MB
    however large it is. Where it does not, the whole body is downloaded once into a
    temporary file (within the byte cap; the file is gone once closed). Every request goes
    through the guard, all of them against one deadline; ``bytes_read`` counts the bytes
    received, and is held to the policy's byte cap too. Make one with :func:`open_remote`.
    """

    def __init__(
        self,
        *,
        url: str,
        policy: FetchPolicy,
        resolver: Resolver,
        transport: httpx.BaseTransport | None,
        deadline: float,
        block_size: int,
        cached_blocks: int,
    ) -> None:
        super().__init__()
        self.url = url
        self.size = 0
        self.bytes_read = 0
        self.ranged = False
        self._policy = policy
        self._resolver = resolver
        self._deadline = deadline
        self._block_size = block_size
        self._cached_blocks = cached_blocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._validator = ""
        self._position = 0
        self._spool: io.BufferedRandom | None = None
        self._client = _client(transport)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence})")
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        # A short read (to the end of one block) is allowed, and FFmpeg asks again.
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self._position)
        if wanted <= 0:
            return 0
        if self._spool is not None:
            self._spool.seek(self._position)
            got = self._spool.readinto(view[:wanted])
        else:
            index, offset = divmod(self._position, self._block_size)
            piece = self._block(index)[offset : offset + wanted]
            got = len(piece)
            view[:got] = piece
        self._position += got
        return got

    def close(self) -> None:
        if not self.closed:
            if self._spool is not None:
                self._spool.close()
            self._blocks.clear()
            self._client.close()
        super().close()

    def _open(self) -> None:
        end = self._block_size - 1
        with self._get(f"bytes=0-{end}") as response:
            if response.status_code == 206:
                self.size = _content_range(response.headers, first=0, last=end)
                self.url = response.url
                self.ranged = True
                etag = response.headers.get("etag", "")
                # If-Range takes a strong validator only; a changed file then comes whole
                # (200) and is refused, rather than mixing two versions' bytes.
                self._validator = "" if etag.startswith("W/") else etag
                self._blocks[0] = self._body(response)
            elif response.status_code == 200:
                # Deleted when closed (in close()); on POSIX it has no name at all.
                self._spool = tempfile.TemporaryFile()  # noqa: SIM115
                for chunk in self._chunks(response):
                    self._spool.write(chunk)
                self.size = self._spool.tell()
            elif response.status_code == 416:
                # Even byte 0 is out of range: the file is empty.
                self._spool = tempfile.TemporaryFile()  # noqa: SIM115
            else:
                raise _status_error(response.status_code)

    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is not None:
            self._blocks.move_to_end(index)
            return block
        first = index * self._block_size
        last = min(first + self._block_size, self.size) - 1
        with self._get(f"bytes={first}-{last}") as response:
            if response.status_code != 206:
                raise _changed()
            _content_range(response.headers, first=first, last=last, size=self.size)
            block = self._body(response)
        if len(block) != last - first + 1:
            raise _changed()
        self._blocks[index] = block
        while len(self._blocks) > self._cached_blocks:
            self._blocks.popitem(last=False)
        return block

    def _get(self, byte_range: str) -> AbstractContextManager[FetchedResponse]:
        headers = {"Range": byte_range}
        if self._validator:
            headers["If-Range"] = self._validator
        return fetch(
            self.url,
            policy=self._policy,
            resolver=self._resolver,
            headers=headers,
            deadline=self._deadline,
            client=self._client,
        )

    def _body(self, response: FetchedResponse) -> bytes:
        return b"".join(self._chunks(response))

    def _chunks(self, response: FetchedResponse) -> Iterator[bytes]:
        for chunk in response.iter_bytes():
            self.bytes_read += len(chunk)
            if self.bytes_read > self._policy.max_bytes:
                raise _too_big()
            yield chunk


def open_remote(
    url: str,
    *,
    policy: FetchPolicy,
    resolver: Resolver = resolve,
    transport: httpx.BaseTransport | None = None,
    deadline: float | None = None,
    block_size: int = BLOCK_SIZE,
    cached_blocks: int = CACHED_BLOCKS,
) -> RemoteFile:
    """``url`` as a :class:`RemoteFile`, its first block read (or, without ranges, all of it).

    ``deadline`` (a monotonic moment; by default the policy's deadline from now) holds for
    every request made through the file. Close it when done (it is a context manager).
    Raises :class:`FetchError`.
    """
    ends = time.monotonic() + policy.deadline_seconds if deadline is None else deadline
    remote = RemoteFile(
        url=url,
        policy=policy,
        resolver=resolver,
        transport=transport,
        deadline=ends,
        block_size=block_size,
        cached_blocks=cached_blocks,
    )
    try:
        remote._open()
    except BaseException:
        remote.close()
        raise
    return remote


def _content_range(
    headers: httpx.Headers, *, first: int, last: int, size: int | None = None
) -> int:
    """The total size in a 206 answer's ``Content-Range``, checked against the range asked."""
    match = _CONTENT_RANGE.fullmatch(headers.get("content-range", "").strip())
    if not match:
        raise _changed()
    start, end, total = (int(group) for group in match.groups())
    # The first answer may be shorter than asked (a small file), never elsewhere.
    if start != first or end < start or end >= total or end > last:
        raise _changed()
    if size is not None and (total != size or end != last):
        raise _changed()
    return total


def _status_error(status: int) -> FetchError:
    if status in (404, 410):
        return FetchError(
            FetchReason.NOT_FOUND,
            say(
                gettext_noop("The link's file was not found (its server answered {status})."),
                status=status,
            ),
            detail=str(status),
        )
    if status in (401, 403):
        return FetchError(
            FetchReason.REFUSED,
            say(
                gettext_noop(
                    "The link's server refused to give the file (it answered {status}); "
                    "is the link public?"
                ),
                status=status,
            ),
            detail=str(status),
        )
    return FetchError(
        FetchReason.FAILED,
        say(gettext_noop("The link's server answered {status}."), status=status),
        detail=str(status),
    )


def _changed() -> FetchError:
    return FetchError(
        FetchReason.FAILED,
        say(gettext_noop("The link's server answered a part of the file wrongly.")),
        detail="Range",
    )
