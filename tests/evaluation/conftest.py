"""Render an HTML report in headless Chromium and report which of its images loaded."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# Runs after every image has loaded or failed (window "load"), then writes the result into the DOM.
_PROBE = """
<script>
window.addEventListener("load", function () {
  var out = Array.prototype.map.call(document.images, function (im) {
    return {src: im.getAttribute("src"), complete: im.complete, width: im.naturalWidth, height: im.naturalHeight};
  });
  var pre = document.createElement("pre");
  pre.id = "fastpanc-image-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def browser() -> Callable[[Path, Path | None], list[dict]]:
    """``check(report, screenshot=None)`` -> one dict per ``<img>``: src, complete, width, height (natural)."""
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install -y chromium); the browser check needs it"
        )
    common = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--allow-file-access-from-files",
        "--hide-scrollbars",
    ]

    def check(report: Path, screenshot: Path | None = None) -> list[dict]:
        probe = report.with_name(report.stem + ".browsercheck.html")  # beside it: same relative links
        probe.write_text(
            report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
        )
        try:
            res = _run([*common, "--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()])
        finally:
            probe.unlink()
        m = re.search(r'<pre id="fastpanc-image-check">(.*?)</pre>', res.stdout, re.S)
        assert m, f"chromium did not render the page (exit {res.returncode}): {res.stderr[-2000:]}"
        if screenshot is not None:
            shot = _run(
                [*common, f"--screenshot={screenshot}", "--window-size=1200,2600", report.resolve().as_uri()]
            )
            assert screenshot.is_file(), f"chromium wrote no screenshot: {shot.stderr[-2000:]}"
        return json.loads(html.unescape(m.group(1)))

    return check
