"""`flask ...` commands. Each docstring is the command's help text."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import sys
import time
import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from flask_babel import force_locale

from . import auth, erasure
from . import catalogue as catalogue_mod
from . import consents as consents_mod
from . import cookie_notice
from . import figures as figures_mod
from . import notices as notices_mod
from . import proof
from . import scan as scan_mod
from . import scan_network, scanjobs
from . import sites as sites_mod
from . import store as store_mod
from .clock import day_start, record_text, today
from .store import Store, StoreError, database_path, get_store, open_store
from .views.admin_proof import proof_links


class _Group(AppGroup):
    """A group of commands that end with the store's reason and exit 1, not a traceback, when the
    database refuses or cannot be used: unreachable, locked, or waiting for `flask db upgrade`."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from exc


notices_cli = _Group("notices", help="Check and publish the notice versions in notices/.")


def _notices_dir() -> Path:
    path = Path(current_app.config["NOTICES_DIR"])
    return path if path.is_absolute() else Path(current_app.root_path) / path


def _report(problems: list[notices_mod.Problem]) -> None:
    for problem in problems:
        click.secho(f"error: {problem}", fg="red", err=True)


@notices_cli.command("check")
def check_command() -> None:
    """Validate every notice source; exit 1 naming each file and problem, and each version
    that `publish` would hold back because a published later version would undo it.

    Example: flask notices check
    """
    store = get_store()
    result = notices_mod.check(_notices_dir(), current_app.config["LANGUAGES"], store, today())
    # What publish would hold back is a problem too, so that CI finds it before publishing.
    result.problems += notices_mod.hold_undos(store, result.unpublished)[1]
    _report(result.problems)
    versions = {(s.slug, s.version) for s in result.sources}
    pending = {(s.slug, s.version) for s in result.unpublished}
    click.echo(f"{len(versions)} valid versions, {len(pending)} not yet published, "
               f"{len(result.problems)} problems.")
    if result.problems:
        raise SystemExit(1)


@notices_cli.command("publish")
@click.option("--by", "actor", default=None, help="Who publishes (default: the system user).")
@click.option("--reason", default=None, help="Why these versions are published; kept in the audit log.")
@click.option("--allow-undo", is_flag=True,
              help="Publish even a version whose changes an already published later version would undo.")
def publish_command(actor: str | None, reason: str | None, allow_undo: bool) -> None:
    """Publish every valid version not yet published, in all languages at once.

    A version may be published before its effective date; it goes live on that
    date. A version dated before an already published later one, whose changes
    that later version would undo, is not published: the command names the later
    version and each line, unless run with --allow-undo. Exits 1 if any file has a
    problem or a version was held back (valid versions are still published).

    Example: flask notices publish --by "Aino Virtanen" --reason "New processor"
    """
    actor = actor or f"cli:{getpass.getuser()}"
    published, problems = notices_mod.publish(
        _notices_dir(), current_app.config["LANGUAGES"], get_store(), actor, today(),
        allow_undo=allow_undo, reason=reason)
    _report(problems)
    versions = sorted({(s.slug, s.version) for s in published})
    for slug, version in versions:
        click.echo(f"published {slug} {version}")
    click.echo(f"{len(versions)} versions published." if versions else "Nothing new to publish.")
    if problems:
        raise SystemExit(1)


@notices_cli.command("withdraw")
@click.argument("slug")
@click.argument("version")
@click.option("--reason", required=True, help="Why the version is withdrawn; kept in the audit log.")
@click.option("--by", "actor", default=None, help="Who withdraws (default: the system user).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def withdraw_command(slug: str, version: str, reason: str, actor: str | None, yes: bool) -> None:
    """Withdraw a published version that has not taken effect, in every language.

    Asks for confirmation (unless --yes); the reason goes to the audit log. Remove the
    version's files from notices/ too, or the next publish publishes it again.

    Example: flask notices withdraw privacy 2027-01-15 --reason "Published too early"
    """
    rows = [v for v in get_store().notice_versions(slug=slug) if v["version"] == version]
    if not rows:
        raise click.ClickException(f"there is no published version {version} of {slug!r}")
    if not reason.strip():
        raise click.ClickException("give the reason with --reason: it is kept in the audit log")
    langs = ", ".join(row["lang"] for row in rows)
    if not yes:
        click.confirm(f"Withdraw {slug} {version} ({rows[0]['title']}; {langs})? Visitors will never "
                      "be shown it.", abort=True)
    try:
        get_store().withdraw_notice_version(slug, version, actor or _actor(), today().isoformat(),
                                            reason.strip())
    except StoreError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"withdrew {slug} {version} ({langs})")
    files = sorted(_notices_dir().joinpath(slug).glob(f"{version}.*.md"))
    if files:
        click.echo("Remove its files, or the next publish publishes it again: "
                   + " ".join(str(f) for f in files))


@notices_cli.command("export")
def export_command() -> None:
    """Write each published version that has no file in notices/ as its file, exactly as
    published (same SHA-256), so that versions published in the admin join the files kept
    in git. Never overwrites: exits 1 naming a file whose text differs from what was published,
    and the files of a version withdrawn in the admin (publish would publish it again).

    Example: flask notices export && git add notices && git commit -m "Versions from the admin"
    """
    written, problems = notices_mod.export(_notices_dir(), get_store())
    _report(problems)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"{len(written)} files written." if written else "Every published version has its file.")
    if problems:
        raise SystemExit(1)


@notices_cli.command("draft-cookies")
@click.argument("site_id")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The notices folder to write into (default: KEKSI_NOTICES_DIR).")
@click.option("--date", "version", default=None,
              help="The draft's effective date, YYYY-MM-DD (default: today, or the day after the latest version).")
def draft_cookies_command(site_id: str, out: Path | None, version: str | None) -> None:
    """Write a draft of a site's cookie notice whose tables come from the site's declaration: one
    file per language, <slug>/<date>.<lang>.md, from the text of the latest published version (its
    words around the marked tables kept). When other sites link the same cookie notice, the tables
    list their cookies too, with the site each is used on. Never overwrites a file. Review the
    draft, write its change summary, then run check and publish, as for any version.

    Example: flask notices draft-cookies demo --date 2027-01-15 && git add notices/cookies
    """
    store = get_store()
    site = store.site(site_id)
    if site is None:
        raise click.ClickException(f"there is no site {site_id!r}")
    slug = site["notices"]["cookies"]
    covered = cookie_notice.covering(store.sites(), slug)
    if len(covered) > 1:
        click.echo(f"{len(covered)} sites link the cookie notice {slug!r}: "
                   f"{', '.join(s['id'] for s in covered)}. The draft lists the cookies of every one of them, "
                   "with the site each is used on, so that it drops none of theirs.")
    published = {v["version"] for v in store.notice_versions(slug=slug)}
    latest = max(published, default=None)
    version = _draft_date(version, latest)
    folder = (out or _notices_dir()) / slug
    paths = [folder / f"{version}.{lang}.md" for lang in current_app.config["LANGUAGES"]]
    if version in published or any(path.exists() for path in paths):
        raise click.ClickException(f"version {version} of {slug!r} exists already: choose another --date")
    written = {lang: _draft_body(covered, slug, lang, latest) for lang in current_app.config["LANGUAGES"]}
    material = any(w.material for w in written.values())
    drafts = [_draft_file(covered, slug, version, lang, latest, w, material) for lang, w in written.items()]
    folder.mkdir(parents=True, exist_ok=True)
    for path, (source, _) in zip(paths, drafts):
        path.write_text(source.source, encoding="utf-8")
        click.echo(f"wrote {path}")
    if latest:  # a first version is all new sections: nothing to point out
        _draft_notes([written for _, written in drafts])
    click.echo("Review the draft and write its change summary, then: flask notices check && flask notices publish")


def _draft_date(value: str | None, latest: str | None) -> str:
    """`--date` as written YYYY-MM-DD, else today or, when later, the day after the latest version."""
    if value is None:
        after = date.fromisoformat(latest) + timedelta(days=1) if latest else today()
        return max(today(), after).isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--date")
    return _date(value, "--date").isoformat()


def _draft_body(covered: list[dict], slug: str, lang: str, latest: str | None) -> cookie_notice.Draft:
    """One language's drafted body, from the latest published version's."""
    base = get_store().notice_version(slug, latest, lang) if latest else None
    return cookie_notice.draft(covered, lang, base["body"] if base else None, current_app.config["ORGANIZATION"])


def _draft_file(covered: list[dict], slug: str, version: str, lang: str, latest: str | None,
                written: cookie_notice.Draft, material: bool) -> tuple[notices_mod.Source, cookie_notice.Draft]:
    """One language of the drafted version, as the file `publish` reads."""
    base = get_store().notice_version(slug, latest, lang) if latest else None
    with force_locale(lang):
        title, summary = (base["title"] if base else cookie_notice.title()), cookie_notice.summary(covered)
    source = notices_mod.compose_source(slug, version, lang, title, summary, material, written.body)
    if isinstance(source, notices_mod.Problem):
        raise click.ClickException(str(source))
    return source, written


def _draft_notes(drafts: list[cookie_notice.Draft]) -> None:
    """What legal writes besides the tables: new sections' prose, and what the text says of a
    category no longer declared."""
    added = sorted({cid for d in drafts for cid in d.added})
    removed = sorted({cid for d in drafts for cid in d.removed})
    unplaced = list(dict.fromkeys(name for d in drafts for name in d.unplaced))
    if unplaced:
        click.echo(f"Tables taken out that no declared category accounts for, of {', '.join(unplaced)}. "
                   "Remove or rewrite what the text says of them.")
    providers = list(dict.fromkeys(name for d in drafts for name in d.new_providers))
    if providers:
        click.echo(f"New providers (recipients) the latest version did not list: {', '.join(providers)}. "
                   "Fix any text that says who else gets the data.")
    if any(d.material for d in drafts):
        click.echo("Marked material (new providers or categories): visitors are asked again. "
                   "Change 'material' before publishing if they should not be.")
    if added:
        click.echo(f"New sections for categories the text did not cover: {', '.join(added)}. Write their prose.")
    if removed:
        click.echo(f"Tables taken out, of categories no longer declared: {', '.join(removed)}. "
                   "Remove or rewrite what the text says of them.")


sites_cli = _Group("sites", help="Manage the sites that embed the consent widget.")


def _read_definition(path: str) -> dict:
    """A site definition from a JSON or TOML file."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        if path.endswith(".toml"):
            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"{path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}")


def _validated(data: dict) -> dict:
    store = get_store()
    data = dict(data)
    data.setdefault("consent_days", current_app.config["CONSENT_DAYS"])
    slugs = {v["slug"] for v in store.notice_versions()}
    try:
        return sites_mod.validate(data, current_app.config["LANGUAGES"], slugs)
    except sites_mod.InvalidSite as exc:
        raise click.ClickException("the site definition has problems:\n" + "\n".join(
            f"  {field}: {message}" for field, message in exc.errors.items()))


def _save_site(site: dict, create: bool) -> None:
    try:
        get_store().save_site(site, _actor(), create=create)
    except StoreError as exc:
        raise click.ClickException(str(exc))


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@sites_cli.command("list")
def sites_list() -> None:
    """List the sites: id, name and origins.

    Example: flask sites list
    """
    for site in get_store().sites():
        click.echo(f"{site['id']}\t{site['name']}\t{' '.join(site['origins'])}")


@sites_cli.command("show")
@click.argument("site_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def sites_show(site_id: str, fmt: str) -> None:
    """Show one site; --format json prints exactly what `sites add` and `sites edit` read.

    Example: flask sites show demo --format json > demo.json
    """
    site = get_store().site(site_id)
    if site is None:
        raise click.ClickException(f"there is no site {site_id!r}")
    if fmt == "json":
        click.echo(json.dumps(site, ensure_ascii=False, indent=2))
        return
    click.echo(f"{site['name']} ({site['id']})")
    click.echo(f"origins: {', '.join(site['origins'])}")
    click.echo(f"default language: {site['default_language']}, consent lasts {site['consent_days']} days")
    for category in site["categories"]:
        cookies = [c["name"] for s in category["services"] for c in s["cookies"]]
        click.echo(f"  {category['id']}: {', '.join(cookies) or '(no cookies)'}")


@sites_cli.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def sites_add(file: str) -> None:
    """Add a site from a JSON or TOML file.

    Example: flask sites add sites/demo.json
    """
    site = _validated(_read_definition(file))
    _save_site(site, create=True)
    click.echo(f"added site {site['id']}")


@sites_cli.command("edit")
@click.argument("site_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def sites_edit(site_id: str, file: str) -> None:
    """Replace a site's definition with a JSON or TOML file; visitors see the new banner.

    Example: flask sites edit demo demo.json
    """
    site = _validated(_read_definition(file))
    if site["id"] != site_id:
        raise click.ClickException(f"the file describes site {site['id']!r}, not {site_id!r}")
    _save_site(site, create=False)
    click.echo(f"saved site {site_id}")


@sites_cli.command("remove")
@click.argument("site_id")
def sites_remove(site_id: str) -> None:
    """Remove a site that has recorded no consents.

    Example: flask sites remove demo
    """
    try:
        get_store().remove_site(site_id, _actor())
    except StoreError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"removed site {site_id}")


@sites_cli.command("scan")
@click.argument("site_id")
@click.option("--url", "urls", multiple=True, help="A page to scan (repeatable); default: each origin's home page.")
@click.option("--pages", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Pages at most, found by links and sitemap.xml on the site's origins.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--fail-on", type=click.Choice(["info", "warning", "error", "never"]), default="error",
              show_default=True, help="Exit 1 when a finding at or above this level exists.")
@click.option("--time-limit", type=click.IntRange(1, 24 * 3600), default=1800, show_default=True,
              help="Seconds: no page is begun after this; the findings so far are reported, with a "
                   "time-limit finding naming the pages not scanned.")
@click.option("--chromium", default=lambda: os.environ.get("KEKSI_CHROMIUM", "/usr/lib/chromium/chromium"),
              help="Chromium to run (default: KEKSI_CHROMIUM, else Debian's).")
def sites_scan(site_id: str, urls: tuple[str, ...], pages: int, fmt: str, fail_on: str, time_limit: int,
               chromium: str) -> None:
    """Scan a site's pages in headless Chromium: what each sets and contacts before a choice, after
    "Reject all" and after "Accept all", against the site's declaration.

    Example: flask --app app sites scan demo --url https://www.example.fi/ --pages 20 --fail-on warning
    """
    site = get_store().site(site_id)
    if site is None:
        raise click.ClickException(f"there is no site {site_id!r}")
    bad = [u for u in urls if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).hostname]
    if bad:
        raise click.ClickException(f"not an http(s) address: {bad[0]}")
    targets = scan_network.Targets(scan_network.networks(current_app.config["SCAN_ALLOW_PRIVATE"]))
    for url in urls:
        try:
            targets.check(url)
        except scan_network.Refused as refused:
            raise click.ClickException(f"refused {url}: {refused}; KEKSI_SCAN_ALLOW_PRIVATE lists "
                                       "the private networks the scanner may visit") from None
    report = scan_mod.scan(site, list(urls), scan_mod.Limits(pages=pages, seconds=time_limit), chromium,
                           catalogue_mod.load_ocd(Path(current_app.instance_path)),
                           progress=lambda done, total, url: click.echo(f"[{done + 1}/{total}] {url}", err=True),
                           targets=targets)
    click.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2) if fmt == "json" else scan_mod.as_text(report))
    worst = report.worst()
    if fail_on != "never" and worst is not None and scan_mod.LEVELS.index(worst) >= scan_mod.LEVELS.index(fail_on):
        sys.exit(1)


scans_cli = _Group("scans", help="Run the site audits queued in the admin.")


@scans_cli.command("work")
@click.option("--once", is_flag=True, help="Run the queued scans, then stop (instead of waiting for more).")
@click.option("--poll", type=click.FloatRange(0.1, 60), default=2.0, show_default=True,
              help="Seconds between looks at the queue while it is empty.")
@click.option("--chromium", default=lambda: os.environ.get("KEKSI_CHROMIUM", "/usr/lib/chromium/chromium"),
              help="Chromium to run (default: KEKSI_CHROMIUM, else Debian's).")
def scans_work(once: bool, poll: float, chromium: str) -> None:
    """Claim the scans queued in the admin and run each in a process of its own, one at a time.

    Run one beside the web server on each host (scripts/serve does); no scan runs twice. SIGTERM
    stops it: a scan it was running goes back to the queue.

    Example: flask --app app scans work
    """
    path, busy = database_path(current_app), current_app.config["BUSY_TIMEOUT_MS"]
    instance, allow_private = current_app.instance_path, current_app.config["SCAN_ALLOW_PRIVATE"]
    worker = scanjobs.Worker(get_store(), lambda scan_id: scanjobs.Job(
        scan_id, worker.name, path, busy, instance, chromium, allow_private), poll_seconds=poll)
    click.echo(f"scan worker {worker.name} started", err=True)
    with scanjobs.signals_stop(worker):
        ran = worker.work(once=once)
    click.echo(f"scan worker {worker.name} stopped after {ran} scan(s)", err=True)


consents_cli = _Group("consents", help="Verify, export, erase and purge consent records.")


def _head(value: str | None, option: str) -> tuple[int, str] | None:
    if value is None:
        return None
    link, _, row_hash = value.partition(":")
    if not link.isdigit() or not consents_mod.HEX64.match(row_hash):
        raise click.BadParameter("give LINK:HASH as printed by an earlier run", param_hint=option)
    return int(link), row_hash


def _zone():
    return ZoneInfo(current_app.config["TIMEZONE"])


@consents_cli.command("verify")
@click.option("--head", "expect", metavar="LINK:HASH",
              help="A chain head printed by an earlier run: check the chain still passes through it.")
@click.option("--audit-head", "audit_expect", metavar="ID:HASH",
              help="An audit head printed by an earlier run: check the audit log still passes through it.")
def consents_verify(expect: str | None, audit_expect: str | None) -> None:
    """Check every proof the database holds; exit 1 naming each problem.

    The hash chain of the consent records (in time order, each removal listed by an erasure
    or purge), the audit log's own chain, every notice version and banner against its SHA-256,
    and the daily figures against the records. Prints both heads: keep them outside the server
    (an audit file, a ticket) and pass them to a later run with --head and --audit-head, which
    then also shows that nothing before them was rewritten.

    Example: flask consents verify --head 1042:3f5a… --audit-head 87:9c0e…
    """
    head, audit_head = _head(expect, "--head"), _head(audit_expect, "--audit-head")
    if not _verify(get_store(), head, audit_head):
        raise SystemExit(1)


def _verify(store: Store, head: tuple[int, str] | None = None, audit_head: tuple[int, str] | None = None) -> bool:
    """Check every proof `store` holds and print the outcome (as `consents verify` does); False when
    anything fails."""
    result = consents_mod.verify(store, head)
    if result.ok:
        click.echo(f"ok: {result.checked} records verified, {result.removed} of them erased or purged")
    else:
        click.secho(f"broken at record {result.broken_at}: {result.problem} "
                    f"({result.checked} records before it verified)", fg="red", err=True)
    if result.ok and head is not None:
        # Whoever can write the database could also chain a removal: list those since the head,
        # to compare with the erasure requests and retention runs on record.
        for link in store.removal_links(head[0]):
            click.echo(f"removed since the head: link {link['seq']}, {link['reason']} of "
                       f"{link['records']} records at {link['removed_at']}")
    problems, audit_head_now = proof.check_all(store, audit_head)
    for where, what in problems:
        click.secho(f"{where}: {what}", fg="red", err=True)
    figures_ok = _report_figures(figures_mod.check(store, _zone()))
    if result.head:
        click.echo(f"chain head: {result.head[0]}:{result.head[1]}")
    if audit_head_now and not problems:
        click.echo(f"audit head: {audit_head_now[0]}:{audit_head_now[1]}")
    return result.ok and figures_ok and not problems


def _report_figures(check: figures_mod.FiguresCheck) -> bool:
    """Print the outcome of a figures check; False when the figures do not match the ledger."""
    if check.uncounted:
        click.echo(f"figures not proven up to {check.unproven_until}: {check.uncounted} erasures or purges "
                   "were made before removals were counted (migration 0008)")
    for site, day, what, kept, derived in check.mismatches[:20]:
        click.secho(f"figures of {site} on {day}: {what} is {kept}, the records give {derived}", fg="red", err=True)
    if check.mismatches:
        return False
    if not check.uncounted:
        click.echo(f"figures ok: every daily figure matches the {check.checked} records held and the removals")
    return True


@consents_cli.command("figures")
@click.option("--check", "check_only", is_flag=True, help="Recompute every figure from the records; exit 1 on a mismatch.")
@click.option("--site", help="The site whose figures to print as CSV.")
@click.option("--from", "first", help="First day, YYYY-MM-DD (default: 30 days before --to).")
@click.option("--to", "last", help="Last day, YYYY-MM-DD (default: today).")
def consents_figures(check_only: bool, site: str | None, first: str | None, last: str | None) -> None:
    """Print a site's daily figures as CSV, or check every figure against the ledger (--check).

    Example: flask consents figures --check
    """
    store = get_store()
    if check_only:
        if not _report_figures(figures_mod.check(store, _zone())):
            raise SystemExit(1)
        return
    definition = store.site(site) if site else None
    if definition is None:
        raise click.UsageError("give --site ID to print its figures, or --check")
    try:
        start, end = figures_mod.parse_range(first, last, today())
    except figures_mod.RangeError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(figures_mod.to_csv(figures_mod.load(store, definition, start, end)), nl=False)


def _date(value: str, name: str) -> date:
    """The date an option names as YYYY-MM-DD, else an error naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name)


def _records_bound(value: str | None, name: str) -> str | None:
    """An export bound, a day (its start in UTC) or a moment, written as records write their times."""
    if value is None:
        return None
    if "T" not in value:
        return day_start(_date(value, name), "UTC", record_text)
    try:
        return record_text(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # a moment like 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name)


@consents_cli.command("export")
@click.option("--site", required=True, help="The site whose records to export.")
@click.option("--since", help="First day to include, YYYY-MM-DD (UTC).")
@click.option("--until", help="Day to stop before, YYYY-MM-DD (UTC).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8", lazy=False), default="-",
              help="File to write (default: standard output).")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where Keksi's admin is reached: each record links its banner and widget code there.")
def consents_export(site: str, since: str | None, until: str | None, fmt: str, output, base_url: str) -> None:
    """Stream a site's consent records as CSV or JSON Lines, in constant memory.

    Each record links the banner version and widget build it names, in the admin (legal).
    Example: flask consents export --site demo --since 2026-01-01 --format jsonl -o audit.jsonl
    """
    store = get_store()
    if store.site(site) is None and not store.count_consents(site):
        raise click.ClickException(f"there is no site {site!r}")
    since, until = _records_bound(since, "--since"), _records_bound(until, "--until")
    total = store.count_consents(site, since, until)
    rows = store.iter_consents(site, since, until)
    with current_app.test_request_context(base_url=base_url):
        links = proof_links()
    with click.progressbar(length=total, label="exporting", file=sys.stderr,
                           show_pos=True) as bar:
        step = 0
        for step, _ in enumerate(consents_mod.export(rows, output, fmt, links), 1):
            if step % 1000 == 0:
                bar.update(1000)
        bar.update(step % 1000)
    output.flush()
    click.echo(f"exported {total} records", err=True)


@consents_cli.command("erase")
@click.option("--consent", "consent_id", help="A consent id the visitor quoted (from the widget or a receipt).")
@click.option("--subject", "subject_id", help="The visitor's subject id, if they quoted that instead.")
def consents_erase(consent_id: str | None, subject_id: str | None) -> None:
    """Erase every record of one visitor on request; the audit log keeps only the count.

    The visitor is found by any one of their consent ids, which the widget and the receipt show
    them, or by their subject id. Example: flask consents erase --consent 9b1e...
    """
    if (consent_id is None) == (subject_id is None):
        raise click.UsageError("give exactly one of --consent or --subject")
    kind, given = ("consent", consent_id) if consent_id else ("subject", subject_id)
    try:
        count = erasure.erase(get_store(), kind, given, _actor(), _zone())
    except erasure.NotFound as exc:
        if exc.reason == "invalid":
            raise click.BadParameter("an id is 32 hex digits", param_hint=f"--{kind}")
        raise click.ClickException(f"there is no {kind} {given} (already erased or purged?)")
    click.echo(f"erased {count} records")
    _compact_hint(count)


@consents_cli.command("purge")
@click.option("--older-than", "days", type=click.IntRange(min=0), default=None,
              help="Days since a record stopped being in force (default: KEKSI_RETENTION_DAYS).")
def consents_purge(days: int | None) -> None:
    """Delete the records whose retention has run out (Keksi also does this daily by itself).

    A record stops being in force when it expires, or earlier when the same visitor's next
    choice on the same site replaces or withdraws it; it is deleted DAYS after that.
    Example: flask consents purge --older-than 730
    """
    days = current_app.config["RETENTION_DAYS"] if days is None else days
    count, cutoff = consents_mod.purge(get_store(), days, _actor(), _zone())
    click.echo(f"purged {count} records that stopped being in force before {cutoff[:10]}")
    _compact_hint(count)


def _compact_hint(removed: int) -> None:
    """On PostgreSQL, after rows were removed: where they still are. SQLite overwrites them
    (secure_delete) and empties its log at once, so it needs no hint (README "What erasure leaves")."""
    if removed and get_store().backend.name == "postgresql":
        click.echo("the removed rows stay in the database files until flask db compact "
                   '(see README "What erasure leaves")')


users_cli = _Group("users", help="Manage the people who use the admin.")


@users_cli.command("add")
@click.argument("email")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(auth.ROLES),
              help="legal, marketing or admin; repeat for several.")
@click.option("--link", is_flag=True, help="Print a one-time link to set the password instead of asking.")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the admin is served, for the link.")
def users_add(email: str, roles: tuple[str, ...], link: bool, base_url: str) -> None:
    """Add a user; asks for the password, or prints a one-time link with --link.

    Example: flask users add aino@example.fi --role legal --link
    """
    store = get_store()
    try:
        email = auth.check_new_user(email, list(roles))
        password_hash = None
        if not link:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
            password_hash = auth.hash_password(password)
        user_id = store.add_user(email, list(roles), password_hash, _actor())
    except (auth.AuthError, StoreError) as exc:
        raise click.ClickException(str(exc))
    if link:
        token = auth.make_password_token(store, user_id)
        click.echo(f"{base_url.rstrip('/')}/admin/set-password/{token}")
    click.echo(f"added {email} ({', '.join(sorted(roles))})", err=link)


@users_cli.command("list")
def users_list() -> None:
    """List the users, their roles and whether they can sign in.

    Example: flask users list
    """
    for user in get_store().users():
        state = "disabled" if user["disabled"] else (
            "password set" if user["password_hash"] else "no password yet")
        click.echo(f"{user['email']}\t{','.join(user['roles'])}\t{state}")


def _user_id(email: str) -> int:
    user = get_store().user_by_email(auth.normalise_email(email))
    if user is None:
        raise click.ClickException(f"there is no user {email}")
    return user["id"]


def _change_user(change, email: str, *args) -> None:
    """Run a store change on the user with `email`; say why when it is refused."""
    try:
        change(_user_id(email), *args, _actor())
    except StoreError as exc:
        raise click.ClickException(str(exc))


def _set_disabled(email: str, disabled: bool) -> None:
    """Disable or enable the user with `email` and say so (what `users disable` and `users enable` do)."""
    _change_user(get_store().set_user_disabled, email, disabled)
    click.echo(f"disabled {email}; their sessions have ended" if disabled else f"enabled {email}")


@users_cli.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Disable a user: their sessions end at once and they cannot sign in. Never the last admin.

    Example: flask users disable aino@example.fi
    """
    _set_disabled(email, True)


@users_cli.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Let a disabled user sign in again.

    Example: flask users enable aino@example.fi
    """
    _set_disabled(email, False)


@users_cli.command("roles")
@click.argument("email")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(auth.ROLES),
              help="legal, marketing or admin; repeat for several. Replaces the user's roles.")
def users_roles(email: str, roles: tuple[str, ...]) -> None:
    """Replace a user's roles; their sessions end. The last admin keeps the admin role.

    Example: flask users roles aino@example.fi --role legal --role marketing
    """
    _change_user(get_store().set_user_roles, email, sorted(set(roles)))
    click.echo(f"{email} now has the roles {', '.join(sorted(set(roles)))}; their sessions have ended")


@users_cli.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_remove(email: str, yes: bool) -> None:
    """Remove a user for good (the audit log keeps what they did). Never the last admin.

    Example: flask users remove aino@example.fi
    """
    _user_id(email)
    if not yes:
        click.confirm(f"Remove {email} for good?", abort=True)
    _change_user(get_store().remove_user, email)
    click.echo(f"removed {email}")


@click.command("backup")
@with_appcontext
@click.argument("destination", type=click.Path(dir_okay=False, writable=True))
def backup_command(destination: str) -> None:
    """Copy the database while the site runs (SQLite online backup), then check the copy.

    Restore by stopping Keksi and putting the copy at KEKSI_DATABASE.

    Example: flask backup /var/backups/keksi-$(date +%F).db
    """
    if Path(destination).exists():
        raise click.ClickException(f"{destination} exists; choose a new file name")
    try:
        get_store().backup(destination)
    except StoreError as exc:  # PostgreSQL: its own tools
        raise click.ClickException(str(exc)) from exc
    copy = open_store(destination)
    try:
        result = copy.integrity_check()
        chain = consents_mod.verify(copy)
    finally:
        copy.close()
    if result != "ok" or not chain.ok:
        raise click.ClickException(f"the copy failed its checks: integrity {result}, chain {chain}")
    click.echo(f"backed up to {destination}: integrity ok, {chain.checked} consent records verified")


db_cli = _Group("db", help="The database's schema and files.")


@db_cli.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply the pending migrations, in order. PostgreSQL is migrated only by this command (under
    a lock, so hosts running it together apply each migration once); until then Keksi answers 503
    and /healthz lists what is pending. SQLite also migrates whenever Keksi starts.

    Example: KEKSI_DATABASE=postgresql://keksi@db.example/keksi flask db upgrade
    """
    applied = store_mod.migrate(current_app)
    click.echo("applied " + ", ".join(applied) if applied else "the schema is up to date: nothing to apply")


@db_cli.command("copy")
@with_appcontext
@click.option("--to", "url", required=True, metavar="URL",
              help="The PostgreSQL database to copy into (a libpq URL): new and empty.")
def db_copy(url: str) -> None:
    """Copy the SQLite database into a new PostgreSQL database, then check the copy.

    Applies the PostgreSQL migrations to URL if it lacks them, refuses a database that already holds
    data, and copies every table in one transaction (a failed copy leaves nothing: run it again).
    Stop Keksi first: a write made during the copy waits, then gets 503. Ends by checking the copy as
    `flask consents verify` does, printing its chain heads; exits 1 if the copy fails the checks.
    Then set KEKSI_DATABASE=URL on every host.

    Example: flask db copy --to postgresql://keksi@db.example/keksi
    """
    source_path = database_path(current_app)
    if store_mod.is_url(source_path):
        raise click.ClickException("KEKSI_DATABASE is a PostgreSQL database already: db copy moves a SQLite one")
    if not store_mod.is_url(url):
        raise click.BadParameter("give a PostgreSQL libpq URL, postgresql://…", param_hint="--to")
    try:
        with contextlib.closing(open_store(source_path)) as source, contextlib.closing(open_store(url)) as target:
            applied = target.migrate()
            if applied:
                click.echo("applied " + ", ".join(applied))
            counts = store_mod.copy_database(source, target, copied=lambda table, rows: click.echo(
                f"copied {table}: {rows} rows"))
            click.echo(f"copied {sum(counts.values())} rows in {len(counts)} tables; checking the copy")
            if not _verify(target):
                click.secho("the copy failed its checks (above); `flask consents verify` on the SQLite "
                            "database, which is unchanged, shows whether it fails them too", fg="red", err=True)
                raise SystemExit(1)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@db_cli.command("compact")
@with_appcontext
def db_compact() -> None:
    """Leave no erased or purged record in the database's files. SQLite: empty the write-ahead
    log into the database file (each erasure and purge already does this). PostgreSQL: rewrite
    the consents table and its indexes (VACUUM FULL), which locks it while it runs: consent posts
    wait, for about 2 s per 100,000 records. Run it after erasures, at a quiet hour. The WAL and
    backups still keep removed records until they roll over (README, "What erasure leaves").

    Example: flask db compact
    """
    started = time.monotonic()
    try:
        get_store().compact()
    except StoreError as exc:  # readers held the table (or the log) for longer than it waits
        raise click.ClickException(f"{exc}: nothing was compacted") from exc
    click.echo(f"compacted in {time.monotonic() - started:.1f} s: erased and purged records are no longer "
               "in the database's files (backups keep theirs until they expire)")


catalogue_cli = _Group("catalogue", help="The service catalogue that sites and the site audit draw on.")


@catalogue_cli.command("list")
@click.option("--lang", default="en", show_default=True, help="Language of the purposes shown.")
def catalogue_list(lang: str) -> None:
    """List the catalogue's services: id, category, provider and cookies.

    Example: flask --app app catalogue list --lang fi
    """
    for entry in catalogue_mod.services():
        cookies = ", ".join(c["name"] for c in entry["cookies"]) or "(no cookies)"
        click.echo(f"{entry['id']}\t{entry['category']}\t{entry['provider'] or '(the site itself)'}\t{cookies}")
        click.echo(f"\t{entry['purpose'].get(lang) or entry['purpose']['en']}")


@catalogue_cli.command("import-ocd")
@click.argument("file", type=click.File("rb"))
def catalogue_import_ocd(file) -> None:
    """Import the Open Cookie Database CSV (Apache-2.0) to classify cookies the catalogue lacks.

    Example: flask --app app catalogue import-ocd open-cookie-database.csv
    """
    data = file.read(catalogue_mod.MAX_OCD_BYTES + 1)
    try:
        rows = catalogue_mod.parse_ocd(data)
    except catalogue_mod.CatalogueError as error:
        raise click.ClickException(OCD_PROBLEMS[error.code].format(**error.params)) from None
    target = catalogue_mod.save_ocd(rows, Path(current_app.instance_path))
    click.echo(f"imported {len(rows)} cookies into {target}")


OCD_PROBLEMS = {
    "too_large": "the file is larger than {limit} bytes",
    "not_utf8": "the file is not UTF-8 text (byte {position})",
    "missing_columns": "this is not an Open Cookie Database CSV: it lacks the columns {columns}",
    "too_many_rows": "the file has more than {limit} rows",
    "bad_csv": "the CSV breaks at line {line}: {reason}",
}


def init_app(app: Flask) -> None:
    app.cli.add_command(backup_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(notices_cli)
    app.cli.add_command(sites_cli)
    app.cli.add_command(consents_cli)
    app.cli.add_command(catalogue_cli)
    app.cli.add_command(scans_cli)
    app.cli.add_command(db_cli)
