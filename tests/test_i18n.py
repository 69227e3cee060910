"""Simplified Chinese: the pages in Chinese, and the shipped catalogue complete and compiled.

CI machines have no GNU gettext, so the compiled ``django.mo`` is kept in the repository. The
tests below read the ``.po`` with a small parser of their own and check that the ``.mo`` says
the same thing: editing a translation without running ``compilemessages`` fails here.
"""

from __future__ import annotations

import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation
from factories import make_job

LC_MESSAGES = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PO_PATH = LC_MESSAGES / "django.po"
MO_PATH = LC_MESSAGES / "django.mo"

# Extra WSGI environ for the test client's requests (its ``**extra``).
ZH: dict[str, Any] = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
EN: dict[str, Any] = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture(autouse=True)
def _back_to_default_language():
    """Requests activate a language in this thread; later tests must not inherit Chinese."""
    yield
    translation.deactivate()


# --- The pages, in Chinese ----------------------------------------------------------------------


def html_lang(html: str) -> str:
    match = re.search(r"<html lang=\"([^\"]+)\"", html)
    assert match, "no <html lang=...>"
    return match.group(1)


def voice_option(html: str, voice_id: str) -> str:
    match = re.search(rf"<option value=\"{re.escape(voice_id)}\"[^>]*>([^<]*)</option>", html)
    assert match, f"no option for voice {voice_id}"
    return match.group(1).strip()


@pytest.mark.django_db
class TestChinesePages:
    def test_the_history_page_is_in_chinese(self, alice: Client, user):
        make_job(user, text="Hello there")
        html = alice.get("/tasks/", **ZH).content.decode()
        assert html_lang(html) == "zh-hans"
        assert "新建对口型" in html  # "New lip-sync"
        assert "历史记录" in html  # "History"
        assert "Studio A的全部对口型任务" in html  # "Every lip-sync of Studio A"
        assert "New lip-sync" not in html

    def test_the_form_is_in_chinese_with_chinese_voice_names(self, alice: Client):
        html = alice.get("/tasks/new/", **ZH).content.decode()
        assert html_lang(html) == "zh-hans"
        assert "1. 视频" in html
        assert "生成对口型视频" in html  # "Make the lip-sync"
        assert voice_option(html, "genshin_vindi2") == "阳光少年"
        assert voice_option(html, "zhinen_xuesheng") == "懂事小弟"

    def test_the_form_in_english_keeps_english_voice_names(self, alice: Client):
        html = alice.get("/tasks/new/", **EN).content.decode()
        assert html_lang(html) == "en"
        assert "New lip-sync" in html
        assert "新建对口型" not in html
        assert voice_option(html, "genshin_vindi2") == "Sunny"

    def test_a_job_page_is_in_chinese(self, alice: Client, user):
        job = make_job(user)
        html = alice.get(f"/tasks/{job.pk}/", **ZH).content.decode()
        assert html_lang(html) == "zh-hans"
        assert f"对口型任务 #{job.pk}" in html  # "Lip-sync #N"
        assert "等待发送" in html  # the status "Waiting to be sent"
        assert "提交内容" in html  # "What was asked"
        assert "阳光少年" in html  # the voice, by its Chinese name

        english = alice.get(f"/tasks/{job.pk}/", **EN).content.decode()
        assert f"Lip-sync #{job.pk}" in english
        assert "Sunny" in english
        assert "阳光少年" not in english

    def test_what_the_worker_wrote_is_shown_in_the_readers_language(
        self, alice: Client, run_job, user, start_kling, sim_clock
    ):
        start_kling(now=sim_clock, submitted_seconds=1, processing_seconds=2)
        job = run_job(make_job(user, video_url="https://example.com/noface.mp4", video_id=""))
        assert job.status == "failed"
        assert "human face" in job.status_detail  # stored in English for staff

        chinese = alice.get(f"/tasks/{job.pk}/", **ZH).content.decode()
        english = alice.get(f"/tasks/{job.pk}/", **EN).content.decode()
        assert "human face" in english
        assert "human face" not in chinese
        assert "人脸" in chinese
        # The timeline's notes, also written by the worker, follow the reader too.
        assert "Kling reported a failure" in english
        assert "Kling reported a failure" not in chinese

    def test_the_language_switch_keeps_chinese_across_pages(self, alice: Client, user):
        job = make_job(user)
        response = alice.post("/i18n/setlang/", {"language": "zh-hans", "next": "/tasks/"})
        assert response.status_code == 302
        assert response["Location"] == "/tasks/"
        assert alice.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"

        for url in ("/tasks/", "/tasks/new/", f"/tasks/{job.pk}/"):
            html = alice.get(url).content.decode()  # no Accept-Language: the cookie decides
            assert html_lang(html) == "zh-hans", url
            assert "新建对口型" in html, url
        form = alice.get("/tasks/new/").content.decode()
        assert voice_option(form, "genshin_vindi2") == "阳光少年"

        alice.post("/i18n/setlang/", {"language": "en", "next": "/tasks/"})
        html = alice.get("/tasks/").content.decode()
        assert html_lang(html) == "en"
        assert "New lip-sync" in html


# --- The catalogue ------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b"}
_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")\s*$")


def _unquote(quoted: str) -> str:
    assert quoted.startswith('"') and quoted.endswith('"'), quoted
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], quoted[1:-1])


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0


def parse_po(text: str) -> list[Entry]:
    """The entries of a .po file (header included, obsolete ``#~`` entries left out)."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int] | None = None
    pending_flags: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            target = None
            continue
        if line.startswith("#,"):
            pending_flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            assert entry is not None and target is not None, f"stray string on line {number}"
            _append(entry, target, _unquote(line))
            continue
        match = _KEYWORD.match(line)
        assert match, f"cannot read line {number}: {raw!r}"
        keyword, index, quoted = match.groups()
        if keyword in ("msgctxt", "msgid") and (entry is None or entry.msgstr):
            entry = Entry(flags=pending_flags, line=number)
            entries.append(entry)
            pending_flags = set()
        assert entry is not None
        target = ("msgstr", int(index or 0)) if keyword.startswith("msgstr") else (keyword, 0)
        _append(entry, target, _unquote(quoted), start=True)
    return entries


def _append(entry: Entry, target: tuple[str, int], text: str, *, start: bool = False) -> None:
    name, index = target
    if name == "msgstr":
        entry.msgstr[index] = ("" if start else entry.msgstr[index]) + text
    else:
        setattr(entry, name, ("" if start else getattr(entry, name)) + text)


@pytest.fixture(scope="module")
def po_entries() -> list[Entry]:
    entries = parse_po(PO_PATH.read_text(encoding="utf-8"))
    assert entries and entries[0].msgid == "", "the .po has no header"
    return entries


@pytest.fixture(scope="module")
def messages(po_entries) -> list[Entry]:
    """Every translatable entry (the header left out)."""
    found = po_entries[1:]
    assert len(found) > 100, "the catalogue looks truncated"
    return found


def label(entry: Entry) -> str:
    return f"line {entry.line}: {entry.msgid!r}"


class TestCatalogue:
    def test_the_parser_reads_continuations_escapes_and_plurals(self):
        text = (
            '#, fuzzy\nmsgid ""\nmsgstr "Language: zh_Hans\\n"\n\n'
            '#, python-brace-format\nmsgid ""\n"{reason}\\n"\n"\\n"\n"See: {link}"\n'
            'msgstr "{reason}\\n\\n\\"查看\\" {link}"\n\n'
            'msgctxt "menu"\nmsgid "Open"\nmsgstr "打开"\n\n'
            'msgid "%d job"\nmsgid_plural "%d jobs"\nmsgstr[0] "%d 个任务"\n\n'
            '#~ msgid "Gone"\n#~ msgstr "没了"\n'
        )
        header, brace, ctxt, plural = parse_po(text)
        assert header.flags == {"fuzzy"} and header.msgstr == {0: "Language: zh_Hans\n"}
        assert brace.msgid == "{reason}\n\nSee: {link}"
        assert brace.msgstr[0] == '{reason}\n\n"查看" {link}'
        assert brace.flags == {"python-brace-format"}
        assert (ctxt.msgctxt, ctxt.msgid, ctxt.msgstr[0]) == ("menu", "Open", "打开")
        assert (plural.msgid_plural, plural.msgstr) == ("%d jobs", {0: "%d 个任务"})

    def test_the_header_declares_chinese_with_one_plural_form(self, po_entries):
        header = po_entries[0]
        assert "fuzzy" not in header.flags
        assert "Plural-Forms: nplurals=1; plural=0;" in header.msgstr[0]
        assert "charset=UTF-8" in header.msgstr[0]

    def test_every_message_is_translated_and_none_is_fuzzy(self, messages):
        fuzzy = [label(e) for e in messages if "fuzzy" in e.flags]
        assert not fuzzy, f"fuzzy entries: {fuzzy}"
        untranslated = [label(e) for e in messages if not all(e.msgstr.values()) or not e.msgstr]
        assert not untranslated, f"untranslated entries: {untranslated}"
        extra_forms = [label(e) for e in messages if e.msgid_plural and set(e.msgstr) != {0}]
        assert not extra_forms, f"Chinese has one plural form, msgstr[0] only: {extra_forms}"

    def test_the_compiled_mo_matches_the_po(self, messages):
        with MO_PATH.open("rb") as handle:
            mo = gettext.GNUTranslations(handle)
        stale: list[tuple[object, ...]] = []
        expected_keys: set[str | tuple[str, int]] = set()
        for entry in messages:
            translated = entry.msgstr.get(0, "")
            if not translated:
                continue
            if entry.msgid_plural is not None:
                key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
                expected_keys.add((key, 0))
                for n in (1, 2, 5):
                    got = (
                        mo.ngettext(entry.msgid, entry.msgid_plural, n)
                        if entry.msgctxt is None
                        else mo.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, n)
                    )
                    if got != translated:
                        stale.append((label(entry), n, got))
            else:
                key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
                expected_keys.add(key)
                got = (
                    mo.gettext(entry.msgid)
                    if entry.msgctxt is None
                    else mo.pgettext(entry.msgctxt, entry.msgid)
                )
                if got != translated:
                    stale.append((label(entry), got))
        hint = "run `manage.py compilemessages -l zh_Hans` and commit django.mo"
        assert not stale, f".mo out of date ({hint}): {stale[:10]}"
        # The catalogue is private to gettext, and typeshed leaves it out.
        compiled = {key for key in mo._catalog if key != ""}  # type: ignore[attr-defined]
        assert compiled == expected_keys, f".mo has other messages than the .po ({hint})"

    def test_placeholders_are_kept(self, messages):
        wrong = []
        for entry in messages:
            source = entry.msgid_plural if entry.msgid_plural is not None else entry.msgid
            for translated in entry.msgstr.values():
                if placeholders(translated) != placeholders(source):
                    wrong.append((label(entry), translated))
        assert not wrong, f"placeholders differ from the English: {wrong}"


_BRACE = re.compile(r"(?<!\{)\{[A-Za-z_]\w*(?:![rsa])?(?::[^{}]*)?\}(?!\})")
_PERCENT = re.compile(r"%(?:\([A-Za-z_]\w*\))?[-#0 +]*\d*(?:\.\d+)?[sdiufFeEgGxXorc%]")


def placeholders(text: str) -> list[str]:
    return sorted(_BRACE.findall(text) + [p for p in _PERCENT.findall(text) if p != "%%"])


class TestPlaceholders:
    def test_finds_both_styles(self):
        assert placeholders("{reason} at {time}, {mb:g} MB") == ["{mb:g}", "{reason}", "{time}"]
        assert placeholders("%(m)d min %(s)02d s, %d, 100%%") == ["%(m)d", "%(s)02d", "%d"]
