"""The sample notices shipped in notices/ are complete under GDPR Art. 13 and say what the code does.

Tests of pages and publishing read a frozen copy (tests/fixtures/notices); these read what a new
install publishes."""

from __future__ import annotations

import json
import re
from datetime import date

import frontmatter
import pytest

from keksi import notices
from keksi.settings import BY_NAME

from .conftest import LANGS, ROOT, SHIPPED_NOTICES

# What each check looks for, in each language's own legal wording.
WORDS = {
    "en": {"basis": r"6\(1\)\([a-f]\)", "required": "## 4. Must you give us your data?",
           "safeguard": ("adequacy decision", "standard contractual clauses"), "joint": "Art. 26",
           "fiscal": "from the end of the financial year", "months": "months after the consent ends",
           "ends": ("withdraw", "replace")},
    "fi": {"basis": r"6 art\. 1 [a-f]", "required": "## 4. Onko sinun annettava tietosi?",
           "safeguard": ("riittävyyspäätös", "vakiosopimuslauseke"), "joint": "26 artikla",
           "fiscal": "tilikauden päättymisestä", "months": "kuukautta suostumuksen päättymisestä",
           "ends": ("peruuttami", "uuteen valintaan")},
    "sv": {"basis": r"6\.1 [a-f]", "required": "## 4. Måste du lämna dina uppgifter?",
           "safeguard": ("adekvat skyddsnivå", "standardavtalsklausul"), "joint": "artikel 26",
           "fiscal": "räkenskapsperiodens utgång", "months": "månader efter att samtycket har upphört",
           "ends": ("återkallat", "ersatt")},
}


def latest(slug: str, lang: str) -> str:
    versions = sorted(SHIPPED_NOTICES.glob(f"{slug}/*.{lang}.md"))
    return frontmatter.loads(versions[-1].read_text(encoding="utf-8")).content


def section(body: str, number: int) -> str:
    start = re.search(rf"^## {number}\. .*$", body, re.M)
    end = re.search(rf"^## {number + 1}\. ", body, re.M)
    assert start, f"no section {number}"
    return body[start.start():end.start() if end else None]


def bullets(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("- ")]


def test_the_shipped_notices_pass_check_and_publish(make_app, tmp_path):
    app = make_app(publish=False, NOTICES_DIR=str(SHIPPED_NOTICES))
    from keksi.store import open_store
    store = open_store(app.config["DATABASE"])
    try:
        assert notices.check(SHIPPED_NOTICES, LANGS, store, today=date(2026, 12, 2)).problems == []
        published, problems = notices.publish(SHIPPED_NOTICES, LANGS, store, "tests", today=date(2026, 12, 2))
        assert not problems and published
    finally:
        store.close()


@pytest.mark.parametrize("lang", LANGS)
def test_each_purpose_states_one_legal_basis(lang):
    purposes = bullets(section(latest("privacy", lang), 3))
    assert len(purposes) >= 8
    for purpose in purposes:
        assert len(re.findall(WORDS[lang]["basis"], purpose)) == 1, purpose


@pytest.mark.parametrize("lang", LANGS)
def test_the_notice_says_which_data_must_be_given_and_why(lang):
    body = latest("privacy", lang)
    assert WORDS[lang]["required"] in body  # Art. 13(2)(e)
    assert len(bullets(section(body, 4))) >= 3


@pytest.mark.parametrize("lang", LANGS)
def test_every_third_party_of_the_demo_site_is_named_with_its_transfer_safeguard(lang):
    body = latest("privacy", lang)
    site = json.loads((ROOT / "sites" / "demo.json").read_text(encoding="utf-8"))
    providers = {service["provider"] for category in site["categories"] for service in category.get("services", [])
                 if not service["provider"].startswith("Tiimityö")}
    recipients = section(body, 7)
    assert providers and all(provider in recipients for provider in providers), providers
    assert WORDS[lang]["joint"] in recipients  # joint controllers for what their pixels collect
    transfers = bullets(section(body, 8))
    assert transfers
    for transfer in transfers:
        assert any(word in transfer for word in WORDS[lang]["safeguard"]), transfer


@pytest.mark.parametrize("lang", LANGS)
def test_retention_is_stated_as_the_law_and_the_code_count_it(lang):
    retention = section(latest("privacy", lang), 9)
    assert WORDS[lang]["fiscal"] in retention  # the Accounting Act counts from the financial year's end
    # Consent records: what `consents purge` does with the default retention, in months.
    months = round(BY_NAME["RETENTION_DAYS"].default / (365.25 / 12))
    line = next(b for b in bullets(retention) if WORDS[lang]["months"] in b)
    assert f"{months} {WORDS[lang]['months']}" in line
    assert all(word in line for word in WORDS[lang]["ends"]), line
