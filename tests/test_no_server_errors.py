"""No input, to any URL of the studio, gives a server error.

Every URL pattern the project routes (the studio's, the log-in pages, the language switch and
the whole admin) is walked as a team member and as a staff superuser, with malformed path
parts, odd query strings, odd headers and bodies that lie about their type, by GET and POST.
Any answer is fine (a 400, a 404, a redirect, a page with a message) except a 5xx: an
exception in a view becomes a 500 here (``raise_request_exception=False``), and each test
names every case that got one, with its exception.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import cv2
import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import DateTimeField, Model
from django.http.response import HttpResponseBase
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern
from factories import make_job, make_member
from media_files import video_bytes
from pytest_django.fixtures import Settings

from tasks_app.models import Job, JobStatus
from tasks_app.services import sharing
from tasks_app.source_links import source_link
from tasks_app.uploads import stored_source_name

pytestmark = pytest.mark.django_db

HUGE_NUMBER = str(10**20)
MANY_DIGITS = "1" + "0" * 4000  # 10**4000: below Python's 4300-digit int() limit
TOO_MANY_DIGITS = "9" * 5000  # past it: int() itself refuses these
LONG_TEXT = "x" * 5000
WEBHOOK_SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
# Zones whose offset carries the first or last day a date can hold past what a datetime can
# hold in UTC: zoneinfo gives year 1 the local mean time, +12:13 in America/Adak and +9:19 in
# Asia/Tokyo, and Adak is 10 h behind in 9999. The pages are otherwise read in the zone
# furthest ahead today.
EXTREME_ZONES = ("America/Adak", "Asia/Tokyo")
DEFAULT_ZONE = "Pacific/Kiritimati"

# Path parts put in place of every parameter of a pattern.
PATH_VALUES = {
    "a superscript two": quote("²"),
    "10**20": HUGE_NUMBER,
    "10**4000": MANY_DIGITS,
    "5000 digits": TOO_MANY_DIGITS,
    "a NUL byte": "%00",
    "a very long string": LONG_TEXT,
    "a climb out of the folder": "..%2f..%2fetc%2fpasswd",
    "invalid UTF-8": "%ff%fe",
}
# Posted too: the values that reach a view rather than stopping at the URL's converter.
POSTED_PATH_VALUES = ("a superscript two", "10**20", "invalid UTF-8")


@dataclass(frozen=True)
class Query:
    string: str
    # The zones to ask it in (the test's default zone when empty).
    zones: tuple[str, ...] = ()


# The keys the studio's pages read. Several odd values go in one query where no one of them
# can hide another (an invalid filter makes the history ignore every filter, so the dates
# come alone).
STUDIO_QUERIES = {
    "huge numbers": Query(
        f"page={HUGE_NUMBER}&id={HUGE_NUMBER}&id={MANY_DIGITS}&from={HUGE_NUMBER}"
        f"&team={MANY_DIGITS}&submitter={HUGE_NUMBER}"
    ),
    "negative numbers and a superscript two": Query(
        "page=-1&q=²&status=²&mode=²&language=²&from=²&id=-1&id=²&video_id=²"
    ),
    "page 10**4000 and huge texts": Query(
        f"page={MANY_DIGITS}&q={LONG_TEXT}&video_id={LONG_TEXT}&next={LONG_TEXT}"
    ),
    "the first and last dates": Query(
        "date_from=0001-01-01&date_to=9999-12-31", zones=EXTREME_ZONES
    ),
    "dates the wrong way round": Query("date_from=9999-12-31&date_to=0001-01-01"),
    "impossible dates": Query("date_from=2024-02-30&date_to=99999-01-01"),
    "repeated keys and keys without values": Query(
        "page=1&page=2&q=a&q=b&status=failed&status=succeeded&id=1&id=1&archived=on"
        "&archived=x&next=//evil.example/&next=javascript:alert(1)&q&=&&"
    ),
    "invalid UTF-8 and NUL bytes": Query(
        "q=%ff%fe&page=%ff&id=%ff&%ff=%ff&next=%ff&status=%c0%af&date_from=%00&from=%00"
    ),
}
# The keys the admin's lists read (anything else sends them back with ?e=1).
ADMIN_LIST_QUERIES = {
    "page 10**20": Query(f"p={HUGE_NUMBER}&o=-1"),
    "page -1 and odd options": Query("p=-1&o=99.x.-&all=x&_popup=9&e=²"),
    "page 10**4000 and a huge search": Query(f"p={MANY_DIGITS}&q={LONG_TEXT}"),
    "a search for a superscript two": Query("q=²"),
    "invalid UTF-8 and NUL bytes": Query(
        "q=%ff%00&_changelist_filters=%ff&status__exact=%ff&team__id__exact=²"
    ),
    # {date} is the model's first date and time field (a job's created_at, say): the list
    # takes a lookup on any of its fields, and its date hierarchy these three.
    "the first day": Query("{date}__year=1&{date}__month=1&{date}__day=1", zones=EXTREME_ZONES),
    "the last day": Query("{date}__year=9999&{date}__month=12&{date}__day=31", zones=EXTREME_ZONES),
    "impossible days": Query(f"{{date}}__year={HUGE_NUMBER}&{{date}}__month=13&{{date}}__day=32"),
}
# The admin's other pages read only these (and the list's keys, kept to return to it).
ADMIN_PAGE_QUERIES = {
    "odd return keys": Query(
        f"_changelist_filters=p%3D{HUGE_NUMBER}%26q%3D%C2%B2&_popup=9&_to_field=²&next=%ff"
    ),
    "invalid UTF-8 and huge values": Query(f"_changelist_filters=%ff&_to_field={LONG_TEXT}"),
}

WEBHOOK_HEADERS = {
    "webhook-id": "msg_1",
    "webhook-timestamp": "9" * 5000,
    "webhook-signature": "v1,AAAA",
}
HEADERS: dict[str, dict[str, str]] = {
    "a Range of thousands of digits": {"range": "bytes=" + "9" * 5000 + "-"},
    "a Range that ends before it starts": {"range": "bytes=5-2"},
    "a Range of nonsense": {"range": "bytes=-,-,a-b,²-³", "if-range": "²"},
    "htmx with a garbage target, a huge webhook-timestamp and other garbage": {
        "hx-request": "true",
        "hx-target": "<script>" + "x" * 2000,
        "hx-current-url": "%ff" * 100,
        "hx-trigger": "\x7f",
        "accept-language": "x" * 1000 + ";q=abc,zh-Hans;q=9e999,*;q=-1,;;,-",
        "x-forwarded-for": "999.999.999.999, ²,, " + "f" * 500,
        **WEBHOOK_HEADERS,
        "if-modified-since": "not a date" * 50,
        "if-none-match": '"' * 99,
    },
}

FORM_LIKE = "video_url=http://[::1/a.mp4&audio_url=https://exa mple.com/a.mp3&text=%ff&page=²"


@dataclass(frozen=True)
class Body:
    content_type: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


BODIES = {
    "multipart without a boundary": Body("multipart/form-data", FORM_LIKE.encode()),
    "multipart that is not": Body("multipart/form-data; boundary=xyz", b"--nope\r\n\x00\xff"),
    "form data of invalid UTF-8": Body(
        "application/x-www-form-urlencoded", b"\xff\xfe=%ff&a=%00&" + FORM_LIKE.encode()
    ),
    "form data that is huge, in an unknown charset": Body(
        "application/x-www-form-urlencoded; charset=nope-8",
        f"team={MANY_DIGITS}&id={HUGE_NUMBER}&next={LONG_TEXT}&q={LONG_TEXT}".encode(),
    ),
    "JSON that is not": Body("application/json", b"{not json\xff"),
    "a callback with a huge webhook-timestamp": Body(
        "application/json", b'{"task_id": "t", "task_status": "succeed"}', WEBHOOK_HEADERS
    ),
}


# --- The URL patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One URL pattern, as a template whose parameters are filled in per case."""

    template: str  # "/tasks/{pk}/retry/"
    params: tuple[str, ...]
    model: type[Model] | None  # the admin's model, for a real object id
    # The list's date hierarchy, or else its model's first date and time field.
    date_field: str = "created_at"

    def url(self, values: dict[str, str]) -> str:
        return self.template.format(**values)

    @property
    def queries(self) -> dict[str, Query]:
        if not self.template.startswith("/admin/"):
            return STUDIO_QUERIES
        if self.model is not None and not self.params and self.template.count("/") == 4:
            return ADMIN_LIST_QUERIES  # /admin/<app>/<model>/
        return ADMIN_PAGE_QUERIES


_ROUTE_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
_REGEX_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _as_template(pattern: object) -> str:
    text = str(pattern).replace("{", "{{").replace("}", "}}")
    if isinstance(pattern, RegexPattern):
        text = _REGEX_PARAM.sub(r"{\1}", text.removeprefix("^").removesuffix("$"))
        return text.replace("\\", "")
    return _ROUTE_PARAM.sub(r"{\1}", text)


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "/") -> Iterator[Route]:
    for pattern in patterns:
        template = prefix + _as_template(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, template)
        elif isinstance(pattern, URLPattern):
            model_admin = getattr(pattern.callback, "model_admin", None)
            if model_admin is None:
                yield Route(template=template, params=_params(template), model=None)
                continue
            fields = model_admin.model._meta.concrete_fields
            dates = [f.name for f in fields if isinstance(f, DateTimeField)]
            yield Route(
                template=template,
                params=_params(template),
                model=model_admin.model,
                date_field=model_admin.date_hierarchy or (dates or ["created_at"])[0],
            )


def _params(template: str) -> tuple[str, ...]:
    return tuple(re.findall(r"(?<!\{)\{(\w+)\}(?!\})", template))


ROUTES = list(_walk(get_resolver().url_patterns))


def test_the_walk_finds_every_kind_of_url():
    templates = {route.template for route in ROUTES}
    assert "/tasks/{pk}/video/" in templates
    assert "/kling/callback/{job_id}/{token}/" in templates
    assert "/accounts/reset/{uidb64}/{token}/" in templates
    assert "/admin/tasks_app/job/{object_id}/change/" in templates
    assert "/admin/{app_label}/" in templates
    assert "/admin/{url}" in templates
    assert "/i18n/setlang/" in templates
    assert len(ROUTES) > 50
    by_template = {route.template: route for route in ROUTES}
    assert by_template["/admin/tasks_app/job/"].queries is ADMIN_LIST_QUERIES
    assert by_template["/admin/auth/user/"].queries is ADMIN_LIST_QUERIES
    assert by_template["/admin/tasks_app/job/{object_id}/change/"].queries is ADMIN_PAGE_QUERIES
    assert by_template["/tasks/"].queries is STUDIO_QUERIES
    assert by_template["/admin/tasks_app/job/"].date_field == "created_at"


# --- The world the requests meet ----------------------------------------------------------------


@dataclass
class World:
    job: Job
    member_pk: int
    # A real value for each parameter name, so the odd queries, headers and bodies reach the
    # views themselves.
    valid: dict[str, str]
    # Real values a route needs of its own (a signed source link's token is no callback's).
    valid_for: dict[str, dict[str, str]] = field(default_factory=dict)

    def url(self, route: Route, odd: dict[str, str] | None = None) -> str:
        """The route's URL with real values, but for the ``odd`` ones."""
        values = self.valid | self.valid_for.get(route.template, {})
        if route.model is not None:
            # The member's jobs keep her from being deleted; the staff user has none.
            if route.model is Job:
                values["object_id"] = str(self.job.pk)
            elif route.model._meta.model_name == "user":
                values["object_id"] = str(self.member_pk)
            else:
                first = route.model._default_manager.order_by("pk").first()
                values["object_id"] = str(first.pk) if first else "1"
        return route.url(values | (odd or {}))


@pytest.fixture
def world(settings: Settings, user: User) -> World:
    settings.TIME_ZONE = DEFAULT_ZONE
    settings.KLING_WEBHOOK_SECRET = WEBHOOK_SECRET
    job = make_job(user, status=JobStatus.SUCCEEDED, result_video_url="https://x.example/r.mp4")
    job.stored_video.save("result.mp4", ContentFile(b"\x00" * 4096), save=False)
    job.stored_size = 4096
    # A picture of its source video, so the poster view gets past "no picture".
    job.poster.save("poster.jpg", ContentFile(_jpeg()), save=False)
    job.save()
    make_job(user)  # and one waiting to be sent, for the live rows
    # An uploaded source video and its signed link, so the link's view reads the request.
    uploaded = make_job(
        user,
        status=JobStatus.PENDING,
        video_id="",
        video_file=default_storage.save(
            stored_source_name(Job(), "clip.mp4"),
            ContentFile(video_bytes(seconds=1, width=64, height=64, face=False)),
        ),
        video_name="clip.mp4",
    )
    with override_settings(SITE_URL="https://studio.example"):
        _, _, token, name = urlsplit(source_link(job=uploaded)).path.split("/")
    Group.objects.create(name="Reviewers")
    # A live share link of the finished job, so its public pages read the request.
    share, share_token = sharing.share_create(job=job, created_by=user, days=7)
    return World(
        job=job,
        member_pk=user.pk,
        valid={
            "pk": str(job.pk),
            "job_id": str(job.pk),
            "membership_id": str(user.memberships.get().pk),  # the team page's rows
            "token": job.callback_token,
            "uidb64": "MQ",
            "id": str(user.pk),
            "content_type_id": str(ContentType.objects.get_for_model(Job).pk),
            "object_id": str(job.pk),
            "app_label": "tasks_app",
            "url": "no/such/page/",
            "name": "video.mp4",  # a signed source link's file name (tasks_app.source_links)
            "share_pk": str(share.pk),
        },
        valid_for={
            "/sources/{token}/{name}": {"token": token, "name": name},
            "/share/{token}/": {"token": share_token},
            "/share/{token}/video.mp4": {"token": share_token},
        },
    )


def _jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.full((32, 32, 3), 128, dtype=np.uint8))
    assert ok
    return encoded.tobytes()


class Visitor:
    """A client logged in as Alice (a member) or as a staff superuser, who notes each 5xx."""

    def __init__(self, person: User, world: World) -> None:
        self.person = person
        self.is_staff = person.is_staff
        self.world = world
        self.client = Client(raise_request_exception=False)
        self.failures: list[str] = []
        self._turned_away: dict[Route, bool] = {}

    def request(self, case: str, method: str, url: str, **kwargs: Any) -> None:
        # A case may have logged the client out (a POST to a log-out page): log in again.
        if "_auth_user_id" not in self.client.session:
            self.client.force_login(self.person)
        response = self.client.generic(method, url, **kwargs)
        if response.status_code >= 500:
            self.failures.append(f"{method} {_short(url)} ({case}): {_exception(response)}")

    def reaches(self, route: Route) -> bool:
        """Whether the route's view reads anything of the request but its path.

        The admin turns a member away (to its log-in page) before it reads anything else,
        so a member walks the admin with odd paths only.
        """
        if self.is_staff:
            return True
        if route not in self._turned_away:
            self.client.force_login(self.person)
            response = self.client.get(self.world.url(route))
            self._turned_away[route] = response.status_code == 302 and response[
                "Location"
            ].startswith("/admin/login/")
        return not self._turned_away[route]

    def report(self) -> str:
        return f"{len(self.failures)} requests got a server error:\n" + "\n".join(self.failures)


@pytest.fixture(params=["member", "staff"])
def visitor(request: pytest.FixtureRequest, world: World, user: User) -> Visitor:
    if request.param == "member":
        return Visitor(user, world)
    return Visitor(make_member("root", is_staff=True, is_superuser=True), world)


def _exception(response: HttpResponseBase) -> str:
    exc_info = getattr(response, "exc_info", None)
    if not exc_info:
        return f"{response.status_code} without an exception"
    frames = traceback.extract_tb(exc_info[2])
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{exc_info[0].__name__}: {str(exc_info[1])[:200]} (at {where})"


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:100] + f"...({len(url)} characters)"


# --- The walk -------------------------------------------------------------------------------------


def test_malformed_path_parts(world, visitor):
    for route in ROUTES:
        if not route.params:
            continue
        for name, value in PATH_VALUES.items():
            url = route.url(dict.fromkeys(route.params, value))
            visitor.request(name, "GET", url)
            if name in POSTED_PATH_VALUES:
                visitor.request(name, "POST", url)
            # One part at a time, the others real: the view gets past its first check.
            for param in route.params if len(route.params) > 1 else ():
                visitor.request(f"{name} as {param}", "GET", world.url(route, {param: value}))
    assert not visitor.failures, visitor.report()


def test_odd_query_strings(world, visitor, settings):
    default_zone = settings.TIME_ZONE
    for route in ROUTES:
        if not visitor.reaches(route):
            continue
        url = world.url(route)
        for name, query in route.queries.items():
            string = query.string.replace("{date}", route.date_field)
            for zone in query.zones or (default_zone,):
                with override_settings(TIME_ZONE=zone):
                    visitor.request(f"{name}, TIME_ZONE={zone}", "GET", f"{url}?{string}")
    assert not visitor.failures, visitor.report()


def test_odd_headers(world, visitor):
    for route in ROUTES:
        if not visitor.reaches(route):
            continue
        for name, headers in HEADERS.items():
            visitor.request(name, "GET", world.url(route), headers=headers)
    assert not visitor.failures, visitor.report()


def test_bodies_that_lie_about_their_type(world, visitor):
    for route in ROUTES:
        if not visitor.reaches(route):
            continue
        for name, body in BODIES.items():
            visitor.request(
                name,
                "POST",
                world.url(route),
                data=body.data,
                content_type=body.content_type,
                headers=body.headers,
            )
    assert not visitor.failures, visitor.report()


# --- The history's date filters at the ends of the calendar ------------------------------------


class TestExtremeDateFilters:
    """A date filter is a day in the server's zone; at the calendar's ends that day's start or
    end is outside what a datetime can hold in UTC (issue #13)."""

    @pytest.mark.parametrize("zone", EXTREME_ZONES)
    def test_the_widest_range_finds_every_job(self, alice, user, settings, zone):
        settings.TIME_ZONE = zone
        job = make_job(user)

        response = alice.get(
            reverse("tasks:list"), {"date_from": "0001-01-01", "date_to": "9999-12-31"}
        )

        assert response.status_code == 200
        assert [row.pk for row in response.context["page"].jobs] == [job.pk]

    @pytest.mark.parametrize("zone", EXTREME_ZONES)
    @pytest.mark.parametrize(
        "dates",
        [
            {"date_from": "9999-12-31"},
            {"date_to": "0001-01-01"},
            {"date_from": "9999-12-31", "date_to": "9999-12-31"},
        ],
    )
    def test_a_range_at_either_end_finds_nothing(self, alice, user, settings, zone, dates):
        settings.TIME_ZONE = zone
        make_job(user)

        response = alice.get(reverse("tasks:list"), dates)

        assert response.status_code == 200
        assert response.context["page"].jobs == []
        assert not response.context["filters"].errors
