"""axe-core in a real browser: the accessibility check every browser test may run on a page.

axe (tests/browser/assets/axe.min.js, vendored) runs on the page as it is; a violation that
axe calls "serious" or "critical" fails the test and is printed with the elements it was found
on. Minor and moderate findings are left to a person's judgement.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

AXE = Path(__file__).parent / "assets" / "axe.min.js"
# The studio's Content-Security-Policy allows scripts from its own origin only (no inline
# script), so axe is served from there: the browser asks for this path and the test answers.
AXE_PATH = "/__axe__/axe.min.js"
BLOCKING = ("serious", "critical")

# htmx polls the job page and the history; a swap in the middle of axe's run would check half
# a page. Cancel every htmx request while axe runs and wait for the last swap to settle.
HOLD_HTMX = """() => {
    window.studioAxeHold = (event) => event.preventDefault();
    document.addEventListener("htmx:beforeRequest", window.studioAxeHold);
}"""
RELEASE_HTMX = """() => {
    document.removeEventListener("htmx:beforeRequest", window.studioAxeHold);
}"""
SETTLED = "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
RUN_AXE = """async () => {
    const results = await axe.run(document, {resultTypes: ["violations"]});
    return results.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
        nodes: v.nodes.map((n) => ({
            target: n.target.join(" "), impact: n.impact, summary: n.failureSummary,
        })),
    }));
}"""


def axe_violations(page: Page) -> list[dict]:
    """axe's violations on the page as it is now (htmx held still while it looks)."""
    page.wait_for_load_state("load")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.route(
            f"**{AXE_PATH}",
            lambda route: route.fulfill(path=AXE, content_type="text/javascript"),
        )
        page.add_script_tag(url=AXE_PATH)
    page.evaluate(HOLD_HTMX)
    try:
        page.wait_for_function(SETTLED)
        return page.evaluate(RUN_AXE)
    finally:
        page.evaluate(RELEASE_HTMX)


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(
            f"{violation['id']} ({violation['impact']}): {violation['help']} "
            f"<{violation['helpUrl']}>"
        )
        for node in violation["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    {node['target']}: {summary[:300]}")
    return "\n".join(lines)


def assert_accessible(page: Page, where: str) -> None:
    """No serious or critical axe violation on the page; if there are, say which and where."""
    blocking = [v for v in axe_violations(page) if v["impact"] in BLOCKING]
    if blocking:
        report = f"axe on {where} ({page.url}):\n{describe(blocking)}"
        print(report)
        pytest.fail(report, pytrace=False)
