"""Paging through a list whose total is already known, without counting it again."""

from __future__ import annotations

import logging

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator

logger = logging.getLogger(__name__)


class CountedPaginator(Paginator):
    """A paginator told its total (the history's counts per status, summed), so a page costs
    one read of its rows instead of a count of every matching row as well.

    The total is checked against what each page finds, and the rows are counted only when
    they disagree (a total kept by hand can fall behind, e.g. after a bulk import): then the
    pages still reach every row and end where the rows end.
    """

    def __init__(self, object_list, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._count = count

    @property
    def count(self) -> int:
        return self._count

    def _correct(self, why: str, count: int | None = None) -> None:
        """Replace a total the rows disagree with (by a count of them, unless known)."""
        counted = self.object_list.count() if count is None else count
        logger.warning(
            "A history total was %s: %d, the rows say %d. If this repeats, the team tallies "
            "have drifted: run `manage.py recount_jobs`.",
            why,
            self._count,
            counted,
        )
        self._count = counted
        self.__dict__.pop("num_pages", None)

    def validate_number(self, number) -> int:
        """Any whole page number from 1: past the total, ``page`` looks for rows anyway."""
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        # One row past the page says whether another page follows, whatever the total says.
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        more, rows = len(rows) > self.per_page, rows[: self.per_page]
        if more and self._count <= bottom + len(rows):
            self._correct("short")
        elif rows and not more and self._count != bottom + len(rows):
            # The last page: the rows before it fill their pages, so this is the total.
            self._correct("wrong", bottom + len(rows))
        elif not rows and self._count > bottom:
            self._correct("too high")
        if not rows and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        return self._get_page(rows, number, self)

    def get_page(self, number) -> Page:
        """The page, the first for a number that is not one, the last past the end."""
        try:
            return self.page(number)
        except PageNotAnInteger:
            return self.page(1)
        except EmptyPage:
            return self.page(self.num_pages)
