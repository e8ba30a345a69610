"""pa11y (HTML_CodeSniffer, WCAG 2 AA), the second accessibility engine beside axe, on the pages legal and
visitors read to compare versions, at a phone's width and a desktop's."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.browser

PA11Y = ROOT / "tests" / "a11y" / "node_modules" / ".bin" / "pa11y"
CHROMIUM = "/usr/lib/chromium/chromium"


def pa11y(url: str, width: int, tmp_path) -> list[dict]:
    config = tmp_path / f"pa11y-{width}.json"
    config.write_text(json.dumps({
        "chromeLaunchConfig": {"executablePath": CHROMIUM,
                               "args": ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]},
        "standard": "WCAG2AA", "runners": ["htmlcs"], "timeout": 60000,
        "viewport": {"width": width, "height": 800},
    }))
    result = subprocess.run([str(PA11Y), "--config", str(config), "--reporter", "json", url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 2), result.stderr  # 2: issues found, listed in the JSON
    return json.loads(result.stdout or "[]")


@pytest.mark.parametrize(("path", "width"), [
    ("/en/privacy/diff/2025-03-01/2026-04-09", 375), ("/fi/privacy/diff/2026-04-09/2025-03-01", 1280),
    ("/sv/privacy/versions", 375), ("/en/cookies/diff/2025-03-01/2025-09-15", 1280)])
def test_version_pages_pass_pa11y(sample_server, path, width, tmp_path):
    issues = pa11y(sample_server.url + path, width, tmp_path)
    assert issues == [], json.dumps(issues, indent=1, ensure_ascii=False)
