"""A batch's page, its actions and its download (placeholders until built)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def batch_detail(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404


def batch_retry(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404


def batch_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404


def batch_archive(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404


def batch_download(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404
