"""Translation catalogs are code: the template matches the source and every language translates every message."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from keksi.settings import BY_NAME

from .conftest import ROOT

TRANSLATIONS = ROOT / "translations"
TEMPLATE = TRANSLATIONS / "messages.pot"
LANGUAGES = BY_NAME["LANGUAGES"].default
PLACEHOLDER = re.compile(r"%\((\w+)\)([#0 +-]*\d*(?:\.\d+)?[a-zA-Z])")


def _read(path: Path, locale: str | None = None) -> Catalog:
    with open(path, "rb") as file:
        return read_po(file, locale=locale)


def _key(message) -> tuple[str | None, str]:
    msgid = message.id[0] if isinstance(message.id, (tuple, list)) else message.id
    return message.context, msgid


def _msgids(catalog: Catalog) -> set[tuple[str | None, str]]:
    return {_key(m) for m in catalog if m.id}


def _placeholders(text: str) -> set[tuple[str, str]]:
    return set(PLACEHOLDER.findall(text))


def translation_problems(catalog: Catalog, template: Catalog) -> list[str]:
    """What is wrong with `catalog` against `template`: one line per missing, untranslated,
    fuzzy or wrongly formatted entry."""
    problems = []
    for message in template:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, (tuple, list)) else (message.id,)
        entry = catalog.get(message.id, context=message.context)
        name = repr(ids[0])
        if entry is None:
            problems.append(f"missing translation: {name} is not in the catalog")
            continue
        strings = entry.string if isinstance(entry.string, (tuple, list)) else (entry.string,)
        if not all(s and s.strip() for s in strings):
            problems.append(f"missing translation: {name} has an empty msgstr")
            continue
        if entry.fuzzy:
            problems.append(f"fuzzy: {name} needs review (remove the fuzzy flag when it is right)")
        expected = set().union(*(_placeholders(i) for i in ids))
        for string in strings:
            found = _placeholders(string)
            # a plural form may leave out the count, never add or rename a placeholder
            if (found != expected) if len(ids) == 1 else not found <= expected:
                problems.append(f"placeholders: {name} has {sorted(expected)}, its translation {string!r} "
                                f"has {sorted(found)}")
    return problems


def _extract_options() -> list[str]:
    """The `-F` and `-k` options of the extraction in scripts/catalogs, so both agree."""
    script = (ROOT / "scripts" / "catalogs").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in script.splitlines() if "pybabel extract" in line)
    pairs = re.findall(r"(?:^|\s)(-F|-k)\s+([^\s\"'$]+)", line)
    flags = {flag for flag, _ in pairs}
    assert flags == {"-F", "-k"}, f"could not read the extract options from scripts/catalogs: {line}"
    return [word for pair in pairs for word in pair]


def _pybabel() -> list[str]:
    beside = Path(sys.executable).with_name("pybabel")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "babel.messages.frontend"]


def test_the_catalog_template_is_up_to_date(tmp_path):
    extracted = tmp_path / "messages.pot"
    subprocess.run([*_pybabel(), "extract", *_extract_options(), "--no-location", "--sort-output",
                    "-o", str(extracted), "."], cwd=ROOT, check=True, capture_output=True, timeout=120)
    in_code, in_template = _msgids(_read(extracted)), _msgids(_read(TEMPLATE))
    assert in_code, "extraction found no messages at all"
    new, gone = sorted(in_code - in_template), sorted(in_template - in_code)
    if new or gone:
        pytest.fail(
            "translations/messages.pot is out of date with the code: run scripts/catalogs, then translate "
            "the new entries in translations/<lang>/LC_MESSAGES/messages.po.\n"
            + "".join(f"  in the code, not in messages.pot: {msgid!r}\n" for _, msgid in new)
            + "".join(f"  in messages.pot, no longer in the code: {msgid!r}\n" for _, msgid in gone),
            pytrace=False)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated(lang):
    path = TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run scripts/catalogs"
    problems = translation_problems(_read(path, locale=lang), _read(TEMPLATE))
    if problems:
        pytest.fail(f"translations/{lang}/LC_MESSAGES/messages.po:\n  " + "\n  ".join(problems)
                    + "\n(after scripts/catalogs, translate these and remove any fuzzy flags)", pytrace=False)


# One word for one thing in each language: the spelling a translation must not use, and the one it uses.
TERMS = {"fi": {"bänner": "banner"}}  # "banneri", as the rest of the Finnish admin and widget say


@pytest.mark.parametrize("lang", sorted(TERMS))
def test_each_language_spells_its_terms_one_way(lang):
    catalog = _read(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", locale=lang)
    strings = [s for m in catalog if m.id for s in (m.string if isinstance(m.string, (tuple, list)) else (m.string,))]
    assert len(strings) > 100
    wrong = [(s, avoid, use) for s in strings for avoid, use in TERMS[lang].items() if avoid in s.lower()]
    assert not wrong, "\n".join(f"write {use!r}, not {avoid!r}: {s!r}" for s, avoid, use in wrong)


def test_the_check_reports_each_kind_of_problem():
    template = Catalog()
    for msgid in ("Fine", "Untranslated", "Not there", "Fuzzy", "Hello %(name)s", "%(n)d day"):
        template.add(msgid if msgid != "%(n)d day" else ("%(n)d day", "%(n)d days"))
    catalog = Catalog(locale="fi")
    catalog.add("Fine", "Hyvä")
    catalog.add("Untranslated", "")
    catalog.add("Fuzzy", "Epäselvä", flags=["fuzzy"])
    catalog.add("Hello %(name)s", "Hei %(nimi)s")
    catalog.add(("%(n)d day", "%(n)d days"), ("päivä", "%(n)d päivää"))
    problems = translation_problems(catalog, template)
    assert problems == [
        "missing translation: 'Untranslated' has an empty msgstr",
        "missing translation: 'Not there' is not in the catalog",
        "fuzzy: 'Fuzzy' needs review (remove the fuzzy flag when it is right)",
        "placeholders: 'Hello %(name)s' has [('name', 's')], its translation 'Hei %(nimi)s' has [('nimi', 's')]",
    ], problems
    catalog["Hello %(name)s"].string = "Hei %(name)d"
    assert translation_problems(catalog, template)[-1].startswith("placeholders: 'Hello %(name)s'")
    catalog["Hello %(name)s"].string = "Hei %(name)s"
    catalog["Untranslated"].string = "Käännetty"
    catalog.add("Not there", "Nyt on")
    catalog["Fuzzy"].flags.discard("fuzzy")
    assert translation_problems(catalog, template) == []
