"""The site audit: what a site really sets and contacts before a choice, after "Reject all" and after
"Accept all", compared with what the site declares.

Each page is opened in headless Chromium by three visitors, each in a fresh browser profile: one who
has not chosen, one who rejects all and one who accepts all (through the banner's documented
`data-keksi-action` buttons), and the last two load the page once more with their choice stored.
The scanner visits only the site's listed origins and the URLs it is given; other hosts a page
contacts are recorded, never crawled. Every connection goes through `scan_network.Gate`, which refuses
addresses that are not public. A page that does not load is a `page-error` finding, not the scan's
end. It runs in its own process (`flask sites scan`), never in a web worker. Playwright is an
optional dependency (`keksi[scan]`).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable
from urllib.parse import urldefrag, urljoin, urlsplit

from . import catalogue, scan_network
from . import sites as sites_mod

VISITORS = ("none", "reject", "accept")
# What a finding is about, in the order the admin explains them (keksi/messages.py words each).
KINDS = ("before-consent", "after-reject", "no-banner", "page-error", "undeclared", "unused", "time-limit")
LEVELS = ("info", "warning", "error")
KEKSI_ITEMS = ("keksi_consent", "keksi_queue")  # what the widget itself keeps: necessary by definition
MAX_SITEMAP_BYTES = 1024 * 1024
MAX_SITEMAPS = 10  # the sitemaps of a sitemap index read at most
SITEMAP_INDEX = "<sitemapindex"
WIDGET_PATH = "/widget/v1/consent.js"
HTML_RE = re.compile(r"\s*(text/html|application/xhtml\+xml)\b", re.IGNORECASE)  # what a page answers with
LOC_RE = re.compile(r"<loc>\s*([^<\s]+)\s*</loc>")

# Records which script wrote each cookie and storage key: the first script URL on the stack.
RECORDER = r"""(() => {
  const log = window.__keksiScan = [];
  const source = () => ((new Error().stack || "").match(/https?:\/\/[^\s)]+?(?=:\d+:\d+)/g) || [])[0] || null;
  const cookie = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  Object.defineProperty(document, "cookie", {configurable: true, get() { return cookie.get.call(document); },
    set(v) { v = String(v);
      log.push(["cookie", v.split("=")[0].trim(), source(), /max-age=0|expires=[^;]*1970/i.test(v)]);
      cookie.set.call(document, v); }});
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (k, v) {
    log.push([this === window.sessionStorage ? "sessionStorage" : "localStorage", String(k), source(), false]);
    return setItem.call(this, k, v); };
})();"""
STORAGE = """() => ["localStorage", "sessionStorage"].flatMap(area => {
  try { return Object.keys(window[area]).map(key => [area, key]); } catch (e) { return []; } })"""


@dataclass
class Observation:
    """What one visitor's browser held and contacted on one page."""

    page: str
    visitor: str
    banner: bool = False
    status: int | None = None  # the HTTP status of the page's last load
    error: str | None = None  # why the page did not load (NotLoaded.code): then nothing else was seen
    detail: str | None = None  # the refused host and address, Chromium's net::ERR_ code, or the other origin
    cookies: list[dict[str, Any]] = field(default_factory=list)
    storage: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Cookies and keys scripts wrote during the load, or, for a visitor who chose, from the click
    # through the reload, even if deleted again before the end (the widget deletes refused cookies,
    # but a tag that wrote one may already have sent it).
    writes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Finding:
    kind: str  # one of KINDS
    level: str  # info, warning, error
    page: str | None
    visitor: str | None
    item: dict[str, Any]  # type (cookie, localStorage, sessionStorage, request, page) and its fields
    source: str | None = None  # the script or response that set it, where the browser can tell
    service: str | None = None  # the declared or catalogue service it belongs to
    category: str | None = None
    service_id: str | None = None  # a catalogue id: what to add to the declaration


@dataclass
class Report:
    site: str
    started: str
    pages: list[str]
    findings: list[Finding]
    observations: list[Observation]

    def worst(self) -> str | None:
        return max((f.level for f in self.findings), key=LEVELS.index, default=None)

    def as_json(self) -> dict[str, Any]:
        return {"site": self.site, "started": self.started, "pages": self.pages,
                "findings": [asdict(f) for f in self.findings],
                "observations": [asdict(o) for o in self.observations]}


# -- what a browser saw ------------------------------------------------------------------


def _cookie(raw: dict[str, Any], page_host: str, setters: dict[str, str]) -> dict[str, Any]:
    domain = raw["domain"].lstrip(".")
    lifetime = None if raw["expires"] < 0 else max(0, int(raw["expires"] - time.time()))
    return {"name": raw["name"], "domain": raw["domain"], "path": raw["path"], "lifetime_seconds": lifetime,
            "http_only": raw["httpOnly"], "secure": raw["secure"], "same_site": raw.get("sameSite"),
            "party": catalogue.party(domain, page_host),
            "source": setters.get(raw["name"])}


class _Visit:
    """One visitor on one page, in a fresh browser context."""

    def __init__(self, browser: Any, gate: scan_network.Gate, allowed: set[str], timeout_ms: int) -> None:
        self.gate = gate
        self.outside: str | None = None  # another origin the page tried to navigate to
        self.context = browser.new_context(service_workers="block")  # a worker's requests bypass routing
        self.context.add_init_script(RECORDER)
        self.page = self.context.new_page()
        self.page.set_default_timeout(timeout_ms)
        self.requests: list[dict[str, Any]] = []
        self.setters: dict[str, str] = {}
        self.chosen: list[list[Any]] = []  # what scripts wrote as the visitor chose, before the reload
        self.page.on("request", self._request)
        self.page.on("response", self._response)
        self.page.route("**/*", lambda route: self._guard(route, allowed))

    def _guard(self, route: Any, allowed: set[str]) -> None:
        request = route.request
        if request.is_navigation_request() and request.frame == self.page.main_frame \
                and _origin(request.url) not in allowed:
            self.outside = _origin(request.url)
            route.abort("blockedbyclient")  # never crawl another host, even when a page sends us there
        else:
            route.continue_()

    def _request(self, request: Any) -> None:
        if urlsplit(request.url).scheme not in ("http", "https", "ws", "wss"):
            return  # the browser's own (a chrome-extension: PDF viewer), a data: or blob: address
        self.requests.append({"host": urlsplit(request.url).hostname or "", "url": urldefrag(request.url)[0],
                              "type": request.resource_type})

    def _response(self, response: Any) -> None:
        try:
            headers = response.headers_array()
        except Exception:  # the response was gone before its headers were read
            return
        for header in headers:
            if header["name"].lower() == "set-cookie":
                self.setters.setdefault(header["value"].split("=", 1)[0].strip(), response.url)

    def open(self, url: str, allowed: set[str], settle_ms: int) -> int | None:
        """Load `url`; its HTTP status, or NotLoaded when the browser could not show it."""
        from playwright.sync_api import Error, TimeoutError

        refused = len(self.gate.refused)
        try:
            response = self.page.goto(url, wait_until="load")
        except TimeoutError:
            raise NotLoaded("timeout") from None
        except Error as error:
            if "Download is starting" in str(error):  # a file the browser saves, not a page
                raise NotAPage() from None
            raise self._not_loaded(refused, error) from None
        why = response.header_value(scan_network.GATE_HEADER) if response else None
        if why:  # the gate answered for a page or a redirect's target
            raise self._not_loaded(refused, None) if why == "refused" else NotLoaded("unreachable")
        if _origin(self.page.url) not in allowed:  # redirected to another site
            raise NotLoaded("outside", _origin(self.page.url))
        if response and response.ok and not HTML_RE.match(response.header_value("content-type") or ""):
            raise NotAPage()  # a PDF or an image linked from a page: no banner to expect
        try:
            self.page.wait_for_load_state("networkidle", timeout=settle_ms)
        except Exception:  # a page that keeps polling is still observed after settle_ms
            pass
        return response.status if response else None

    def _not_loaded(self, refused: int, error: Exception | None) -> "NotLoaded":
        """Why the load that began when the gate had refused `refused` connections failed, in short."""
        if self.gate.refused[refused:]:
            last = self.gate.refused[-1]
            return NotLoaded("refused", f"{last.host} ({last.address})")
        if self.outside:
            return NotLoaded("outside", self.outside)
        return NotLoaded("unreachable", _net_error(error))

    def banner(self, timeout_ms: int) -> bool:
        try:
            self.page.locator('#keksi-consent [data-keksi-action="reject_all"]').first.wait_for(
                state="visible", timeout=timeout_ms)
            return True
        except Exception:
            return False

    def choose(self, action: str, timeout_ms: int) -> None:
        self.page.locator(f'#keksi-consent [data-keksi-action="{action}"]').first.click()
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline and not any(c["name"] == "keksi_consent" for c in self.context.cookies()):
            self.page.wait_for_timeout(100)

    def written(self) -> list[list[Any]]:
        """What scripts wrote (kind, name, source, deleting) since the last call, or since the load;
        each writer is kept in `setters`, so a cookie written before the visitor's reload still
        names its script."""
        log = self.page.evaluate("(window.__keksiScan || []).splice(0)")
        for _kind, name, source, deleting in log:
            if source and not deleting:  # the widget deleting a refused cookie did not set it
                self.setters.setdefault(name, source)
        return log

    def observe(self, url: str, visitor: str, banner: bool, status: int | None) -> Observation:
        writes = []
        for kind, name, source, deleting in self.chosen + self.written():
            if not deleting and not (source and urlsplit(source).path == WIDGET_PATH):
                writes.append({"type": kind, "name": name, "source": source})
        host = urlsplit(url).hostname or ""
        storage = [{"area": area, "key": key, "source": self.setters.get(key)}
                   for area, key in self.page.evaluate(STORAGE)]
        cookies = [_cookie(c, host, self.setters) for c in self.context.cookies()]
        return Observation(url, visitor, banner, status, cookies=cookies, storage=storage,
                           requests=list(self.requests), writes=writes)

    def links(self) -> list[str]:
        return self.page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")

    def close(self) -> None:
        self.context.close()


class NotLoaded(Exception):
    """A page the browser could not show. `code`: refused (an address that is not public), outside (it
    went to another site), unreachable or timeout; `detail` says more where the browser can tell."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        self.code, self.detail = code, detail


class NotAPage(Exception):
    """An address that answered with a file (a PDF, an image, a download), not an HTML page: it is
    not scanned and does not count as a page."""


def _net_error(error: Exception | None) -> str | None:
    """Chromium's code for a failed load (net::ERR_CONNECTION_REFUSED), without Playwright's call log."""
    code = re.search(r"net::ERR_[A-Z_]+", str(error or ""))
    return code[0] if code else None


def _origin(url: str) -> str:
    """The canonical origin of any page or resource URL, "" if it has none (`canonical_origin`
    refuses a URL with a path, so the path is dropped first)."""
    parts = urlsplit(url)
    return sites_mod.canonical_origin(f"{parts.scheme}://{parts.netloc}") or ""


# -- crawling -----------------------------------------------------------------------------


@dataclass
class Limits:
    pages: int = 10  # pages scanned at most, given URLs included
    page_timeout_ms: int = 15_000  # loading one page
    settle_ms: int = 2_000  # waiting for a page's requests to quiet down
    banner_timeout_ms: int = 5_000  # waiting for the banner to appear
    seconds: float | None = None  # the whole scan: no page but the first is begun after this (None: no limit)

    def page_seconds(self) -> float:
        """The longest one page can take: each visitor, tried twice, loads it, waits for the banner,
        chooses (as long again at most) and loads it again; each load may take its timeout and settle."""
        visit_ms = 2 * (self.page_timeout_ms + self.settle_ms) + 2 * self.banner_timeout_ms
        return len(VISITORS) * 2 * visit_ms / 1000


def _same_site_links(links: Iterable[str], origins: set[str]) -> list[str]:
    found = []
    for link in links:
        url = urldefrag(link)[0]
        if urlsplit(url).scheme in ("http", "https") and _origin(url) in origins:
            found.append(url)
    return found


def _sitemap(browser: Any, origin: str, timeout_ms: int) -> list[str]:
    """The page addresses of an origin's /sitemap.xml, read as text (no XML parser, no entities).
    A sitemap index (what WordPress and most shops publish) names sitemaps, not pages: those of
    the same origin are read in turn, up to MAX_SITEMAPS. Read by a page, so that it too goes
    through the gate."""
    context = browser.new_context(service_workers="block")
    try:
        page = context.new_page()
        body = _sitemap_text(page, origin + "/sitemap.xml", timeout_ms)
        if SITEMAP_INDEX not in body:
            return LOC_RE.findall(body)
        children = [url for url in LOC_RE.findall(body) if _origin(url) == origin][:MAX_SITEMAPS]
        return [url for child in children for url in LOC_RE.findall(_sitemap_text(page, child, timeout_ms))]
    finally:
        context.close()


def _sitemap_text(page: Any, url: str, timeout_ms: int) -> str:
    """One sitemap's text, at most MAX_SITEMAP_BYTES; "" when there is none (the common case)."""
    try:
        response = page.goto(url, timeout=timeout_ms)
        if response is None or not response.ok or response.header_value(scan_network.GATE_HEADER):
            return ""
        return response.body()[:MAX_SITEMAP_BYTES].decode("utf-8", "replace")
    except Exception:
        return ""


# -- classifying and judging -------------------------------------------------------------


class Declaration:
    """What the site declares: each cookie name or prefix, and each service, with its category."""

    def __init__(self, site: dict[str, Any], extra: Iterable[dict[str, Any]], keksi_hosts: set[str]) -> None:
        self.patterns = [(name, category) for category, names in sites_mod.cookie_patterns(site).items()
                         for name in names]
        self.stored = [(cookie["name"], category["id"]) for category in site["categories"]
                       for service in category["services"] for cookie in service["cookies"]
                       if cookie.get("storage") == "local"]  # the declaration's localStorage keys
        self.services = {service["name"].lower(): category["id"]
                         for category in site["categories"] for service in category["services"]}
        self.extra = tuple(extra)
        self.own_hosts = {urlsplit(origin).hostname for origin in site["origins"]} | keksi_hosts

    def declared(self, name: str, storage: bool = False) -> str | None:
        """The category that declares a cookie (or, with `storage`, a storage key) `name`, else None."""
        for pattern, category in self.stored if storage else self.patterns:
            if catalogue.name_matches(name, pattern):
                return category
        return None

    def item(self, name: str, domain: str = "",
             storage: bool = False) -> tuple[str | None, catalogue.Match | None, bool]:
        """(category, catalogue match, declared) of a cookie or (with `storage`) a storage key."""
        if name in KEKSI_ITEMS:
            return "necessary", None, True
        match = catalogue.classify_cookie(name, domain, self.extra)
        category = self.declared(name, storage)
        return (category, match, True) if category else (match.category if match else None, match, False)

    def host(self, host: str) -> tuple[str | None, catalogue.Match | None]:
        match = catalogue.classify_host(host)
        if match is None:
            return None, None
        return self.services.get(match.service.lower(), match.category), match


def _not_allowed(kind: str, observation: Observation, declaration: Declaration) -> list[Finding]:
    """What a visitor who has not consented (kind before-consent or after-reject) should not have."""
    found = []
    present = {c["name"] for c in observation.cookies}
    removed = [{"name": w["name"], "domain": "", "source": w["source"], "removed": True}
               for w in observation.writes if w["type"] == "cookie" and w["name"] not in present]
    kept = [dict(c, removed=False) for c in observation.cookies]
    for cookie in kept + list({c["name"]: c for c in removed}.values()):
        category, match, _ = declaration.item(cookie["name"], cookie["domain"])
        if category != "necessary":
            found.append(Finding(kind, "error" if category else "warning", observation.page, observation.visitor,
                                 {"type": "cookie", **{k: v for k, v in cookie.items() if k != "source"}},
                                 cookie["source"], match.service if match else None, category,
                                 match.service_id if match else None))
    for item in observation.storage:
        category, match, _ = declaration.item(item["key"], storage=True)
        if category != "necessary":
            found.append(Finding(kind, "error" if category else "warning", observation.page, observation.visitor,
                                 {"type": item["area"], "name": item["key"]}, item["source"],
                                 match.service if match else None, category, match.service_id if match else None))
    for host in sorted({r["host"] for r in observation.requests} - declaration.own_hosts):
        category, match = declaration.host(host)
        if category != "necessary":
            found.append(Finding(kind, "error" if category else "warning", observation.page, observation.visitor,
                                 {"type": "request", "host": host}, None, match.service if match else None,
                                 category, match.service_id if match else None))
    return found


def _declaration_gaps(observations: list[Observation], declaration: Declaration) -> list[Finding]:
    """Cookies and localStorage keys seen but not declared (with what the catalogue suggests), and
    declared ones never seen (a declared storage key counts as seen in either storage area)."""
    cookies: dict[str, tuple[Observation, dict[str, Any]]] = {}
    stored: dict[str, tuple[Observation, dict[str, Any]]] = {}
    for observation in observations:
        for cookie in observation.cookies:
            cookies.setdefault(cookie["name"], (observation, cookie))
        for item in observation.storage:
            stored.setdefault(item["key"], (observation, item))
    found = [_undeclared(observation, {"type": "cookie", "name": name, "domain": cookie["domain"]},
                         cookie["source"], declaration.item(name, cookie["domain"]))
             for name, (observation, cookie) in cookies.items()]
    found += [_undeclared(observation, {"type": item["area"], "name": key}, item["source"],
                          declaration.item(key, storage=True))
              for key, (observation, item) in stored.items() if item["area"] == "localStorage"]
    return ([f for f in found if f] + _unused(declaration.patterns, cookies, "cookie")
            + _unused(declaration.stored, stored, "localStorage"))


def _undeclared(observation: Observation, item: dict[str, Any], source: str | None,
                judged: tuple[str | None, catalogue.Match | None, bool]) -> Finding | None:
    category, match, declared = judged
    if declared:
        return None
    return Finding("undeclared", "warning", observation.page, observation.visitor, item, source,
                   match.service if match else None, category, match.service_id if match else None)


def _unused(declared: list[tuple[str, str]], seen: Iterable[str], kind: str) -> list[Finding]:
    """An `unused` finding of each declared name or prefix that matches nothing seen (Keksi's own aside)."""
    return [Finding("unused", "info", None, None, {"type": kind, "name": pattern}, category=category)
            for pattern, category in declared if pattern not in KEKSI_ITEMS
            and not any(catalogue.name_matches(name, pattern) for name in seen)]


def _page_finding(observation: Observation) -> Finding | None:
    """`page-error` for a page that did not load (error) or answered with an error status (warning: it
    was still observed); else `no-banner` for a page without the banner before a choice."""
    item = {"type": "page", "status": observation.status, "error": observation.error, "detail": observation.detail}
    if observation.error:
        return Finding("page-error", "error", observation.page, observation.visitor, item)
    if observation.visitor != "none":
        return None
    if (observation.status or 0) >= 400:
        return Finding("page-error", "warning", observation.page, "none", item)
    if not observation.banner:
        return Finding("no-banner", "error", observation.page, "none", {"type": "page", "status": observation.status})
    return None


def judge(observations: list[Observation], declaration: Declaration) -> list[Finding]:
    findings: list[Finding] = []
    for observation in observations:
        if page := _page_finding(observation):
            findings.append(page)
        if observation.error:
            continue
        if observation.visitor == "none":
            findings += _not_allowed("before-consent", observation, declaration)
        elif observation.visitor == "reject" and observation.banner:
            findings += _not_allowed("after-reject", observation, declaration)
    return findings + _declaration_gaps(observations, declaration)


# -- the scan -------------------------------------------------------------------------------


def _visit(browser: Any, gate: scan_network.Gate, url: str, visitor: str, allowed: set[str],
           limits: Limits) -> tuple[Observation | None, list[str]]:
    """One visitor on one page; returns what was seen and the page's links (for the first visitor),
    or None when the address is a file, not a page."""
    visit = _Visit(browser, gate, allowed, limits.page_timeout_ms)
    try:
        status = visit.open(url, allowed, limits.settle_ms)
        banner = visit.banner(limits.banner_timeout_ms)
        links = visit.links() if visitor == "none" else []
        if visitor != "none" and banner:
            visit.written()  # before the choice: the first visitor's to report
            visit.requests.clear()  # what follows happened as or after the visitor chose
            visit.choose("reject_all" if visitor == "reject" else "accept_all", limits.banner_timeout_ms)
            visit.chosen = visit.written()  # a tag that writes on keksi:change, whatever the choice
            status = visit.open(url, allowed, limits.settle_ms)
        return visit.observe(url, visitor, banner, status), links
    except NotLoaded as failed:
        return Observation(url, visitor, error=failed.code, detail=failed.detail), []
    except NotAPage:
        return None, []
    finally:
        visit.close()


def _keksi_hosts(observations: list[Observation]) -> set[str]:
    """Where the pages load Keksi's widget from: that server is part of the consent, not a third party."""
    return {r["host"] for o in observations for r in o.requests if urlsplit(r["url"]).path == WIDGET_PATH}


def _visit_twice(browser: Any, gate: scan_network.Gate, url: str, visitor: str, allowed: set[str],
                 limits: Limits) -> tuple[Observation | None, list[str]]:
    """A visit, tried once more if the page did not load (a busy server, a slow first start) or the
    browser failed on it; a refused or outside page, or a file, is not tried again."""
    from playwright.sync_api import Error

    for _attempt in range(2):
        try:
            observation, links = _visit(browser, gate, url, visitor, allowed, limits)
        except Error as error:  # the page went away mid-visit: a crash, a click that found nothing
            observation, links = Observation(url, visitor, error="unreachable", detail=_net_error(error)), []
        if observation is None or observation.error in (None, "refused", "outside"):
            break
    return observation, links


def _scan_page(browser: Any, gate: scan_network.Gate, url: str, allowed: set[str],
               limits: Limits) -> tuple[list[Observation], list[str]]:
    """Every visitor on one page and the page's links; a page that did not load for the first visitor
    is not tried by the others, and one whose address is refused is not opened at all. No
    observations: the address is a file, not a page."""
    try:
        gate.targets.check(url)
    except scan_network.Refused as refused:
        return [Observation(url, "none", error="refused", detail=f"{refused.host} ({refused.address})")], []
    observations, links = [], []
    for visitor in VISITORS:
        observation, found = _visit_twice(browser, gate, url, visitor, allowed, limits)
        if observation is None:
            return [], []
        observations.append(observation)
        links += found
        if observation.error and visitor == "none":
            break
    return observations, links


def scan(site: dict[str, Any], urls: list[str], limits: Limits, chromium: str,
         extra: Iterable[dict[str, Any]] = (), progress=lambda done, total, url: None,
         targets: scan_network.Targets | None = None) -> Report:
    """Scan up to `limits.pages` pages of `site`: the given URLs, else each origin's home page, then
    same-origin pages found by links and sitemap.xml. Every connection goes through a gate that
    refuses addresses `targets` does not permit (by default every address that is not public)."""
    from playwright.sync_api import sync_playwright  # the optional dependency, needed only here

    origins = set(site["origins"])
    allowed = origins | {_origin(u) for u in urls}
    queue = list(dict.fromkeys(urls or [origin + "/" for origin in site["origins"]]))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    observations: list[Observation] = []
    done: list[str] = []
    files: set[str] = set()  # addresses that answered with a file (a PDF, an image)
    deadline = None if limits.seconds is None else time.monotonic() + limits.seconds
    cut: list[Finding] = []
    with sync_playwright() as playwright, scan_network.Gate(targets or scan_network.Targets()) as gate:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", *scan_network.chromium_args(gate)])
        try:
            for origin in sorted(origins):
                queue += _same_site_links(_sitemap(browser, origin, limits.page_timeout_ms), origins)
            while queue and len(done) < limits.pages and len(files) < limits.pages:  # files cost loads too
                url = queue.pop(0)
                if url in done or url in files:
                    continue
                if done and deadline is not None and time.monotonic() > deadline:  # one page at least
                    cut = [_cut_short(limits.seconds, done, [url, *queue], limits.pages)]
                    break
                progress(len(done), limits.pages, url)
                done.append(url)
                seen, links = _scan_page(browser, gate, url, allowed, limits)
                if not seen:  # a file: not a page, and not counted as one
                    done.remove(url)
                    files.add(url)
                    continue
                observations += seen
                queue += [link for link in _same_site_links(links, origins) if link not in done]
        finally:
            browser.close()
    declaration = Declaration(site, extra, _keksi_hosts(observations))
    return Report(site["id"], started, done, judge(observations, declaration) + cut, observations)


def _cut_short(seconds: float, done: list[str], waiting: list[str], pages: int) -> Finding:
    """`time-limit`: the scan's time ran out before these pages (as many as the page limit leaves)."""
    left = [url for url in dict.fromkeys(waiting) if url not in done][:max(pages - len(done), 0)]
    return Finding("time-limit", "warning", None, None, {"type": "scan", "seconds": seconds, "not_scanned": left})


# Why a page did not load, in the text report's words (the admin says each in the reader's language).
NOT_LOADED = {"refused": "refused: not a public address (KEKSI_SCAN_ALLOW_PRIVATE)",
              "outside": "it went to another site", "unreachable": "could not be reached",
              "timeout": "did not load in time"}


def _describe(item: dict[str, Any]) -> str:
    """A finding's item in a few words: a cookie removed again says so, a page says its status."""
    if item["type"] == "page":
        if item.get("error"):
            detail = f" ({item['detail']})" if item.get("detail") else ""
            return f"page not loaded: {NOT_LOADED.get(item['error'], item['error'])}{detail}"
        return f"page, HTTP {item['status']}" if (item.get("status") or 0) >= 400 else "page"
    if item["type"] == "scan":
        return f"time limit of {item['seconds']:g} s reached; not scanned: {', '.join(item['not_scanned']) or '-'}"
    removed = " (removed again before the end)" if item.get("removed") else ""
    return f"{item['type']} {item.get('name') or item.get('host') or ''}{removed}"


def as_text(report: Report) -> str:
    """One line per finding, worst first: what a web team reads in its CI log."""
    lines = [f"Scanned {len(report.pages)} page(s) of {report.site} at {report.started}."]
    for f in sorted(report.findings, key=lambda f: -LEVELS.index(f.level)):
        where = f"{f.page} [{f.visitor}]" if f.page else "the scan" if f.kind == "time-limit" else "the declaration"
        about = f" – {f.service} ({f.category})" if f.service else f" – {f.category}" if f.category else ""
        source = f", set by {f.source}" if f.source else ""
        lines.append(f"{f.level.upper():7} {f.kind:15} {where}: {_describe(f.item)}{source}{about}")
    if not report.findings:
        lines.append("No findings.")
    return "\n".join(lines)
