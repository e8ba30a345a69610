/* Keksi consent widget. Embedding: widget/README.md. Built (minified, CSS inlined) by keksi/widget.py.
 *
 * Strict-CSP safe: the DOM is built with createElement and text nodes, styles come from a
 * constructed stylesheet adopted by a shadow root, and nothing is evaluated from strings. */
(() => {
  "use strict";
  const W = window, D = document, P = performance, me = D.currentScript;
  // Once per page; an element whose id or name is "keksi" is also window.keksi, but never a function.
  if (!me || typeof (W.keksi || {}).on == "function") return;
  P.mark("keksi:start");
  const CSS = "__KEKSI_CSS__", VERSION = "__KEKSI_VERSION__";
  const NAME = "keksi_consent", QUEUE = "keksi_queue";
  const site = me.dataset.site;
  // The admin's preview (data-preview): the real banner, but nothing is read, written or posted,
  // so one preview cannot change another, nor the admin's own choice on Keksi's pages.
  const preview = me.hasAttribute("data-preview");
  // Ask for the site's configuration first, in one request; everything else is set up while it
  // travels. The server answers a language it does not serve with the site's default.
  const lang = (me.dataset.lang || D.documentElement.lang).toLowerCase().split("-")[0];
  // Relative to the script: Keksi may be served under a path of the site's own origin (first-party mode).
  const config = fetch(new URL("../../api/v1/sites/" + encodeURIComponent(site) + "/config", me.src) + // no cookies
      (/^[a-z]{2,3}$/.test(lang) ? "?lang=" + lang : "")) // cross-origin; as <link rel=preload crossorigin>
    .then(r => r.ok ? r.json() : Promise.reject(Error("config: HTTP " + r.status)))
    .then(c => (P.mark("keksi:config"), c));
  const gpc = navigator.globalPrivacyControl === true;
  const listeners = [];
  let state, cfg, T, sheet, root, status, banner, back, dialog, opener, surface, boxes, busy;

  const now = () => Math.floor(Date.now() / 1000);
  // == 1: a stored choice holds 1 or 0; its inherited members (constructor, __proto__) are no categories.
  const get = id => id == "necessary" || !!state && state.c[id] == 1;
  // The categories a tag names, as a person types them ("Marketing  analytics"); "" names none granted.
  const needs = el => el.dataset.consent.trim().toLowerCase().split(/\s+/);
  const allowed = el => needs(el).every(get);
  const ready = fn => D.readyState == "loading" ? D.addEventListener("DOMContentLoaded", fn) : fn();
  const optional = () => cfg.categories.filter(c => !c.required).map(c => c.id);
  const all = on => Object.fromEntries(cfg.categories.map(c => [c.id, c.required || on]));
  // A function, so that "$&" or "$1" in a value (a category name) is inserted as written.
  const fill = (text, key, value) => text.replace("%(" + key + ")s", () => value);
  state = preview ? null : readCookie();
  // A non-secure page has no crypto.randomUUID; a blob: URL ends in a random UUID in every browser.
  const uuid = () => crypto.randomUUID?.() || URL.createObjectURL(new Blob).slice(-36);

  // Google Consent Mode v2: everything denied by default, before the Google tag runs (when our tag
  // comes first), then updated from the stored choice and after each choice.
  const mode = on => {
    const v = id => on(id) ? "granted" : "denied", m = v("marketing"), p = v("preferences");
    return {ad_storage: m, ad_user_data: m, ad_personalization: m, analytics_storage: v("analytics"),
      functionality_storage: p, personalization_storage: p, security_storage: "granted"};
  };
  function consentMode(command, params) { // queued in dataLayer for a Google tag that loads later
    if (W.gtag) W.gtag("consent", command, params);
    else (function () { (W.dataLayer = W.dataLayer || []).push(arguments); })("consent", command, params);
  }
  consentMode("default", Object.assign(mode(() => 0), {wait_for_update: 500}));
  if (state) consentMode("update", mode(get));

  function h(tag, attrs, ...kids) {
    const el = D.createElement(tag);
    for (const k in attrs) {
      const v = attrs[k];
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (v != null && v !== false) el.setAttribute(k, v === true ? "" : v);
    }
    el.append(...kids.flat().filter(k => k != null && k !== false));
    return el;
  }
  // data-keksi-action is a documented hook for privacy tools (widget/rules/, widget/README.md).
  const button = (text, fn, cls, action) => h("button", {type: "button", class: cls, onclick: fn,
    "data-keksi-action": action}, text);

  function shadow(host) { // after the config arrived: its style is the site's theme
    const r = host.attachShadow({mode: "open"});
    try {
      if (!sheet) (sheet = new CSSStyleSheet()).replaceSync(CSS + cfg.style);
      r.adoptedStyleSheets = [sheet];
    } catch (e) { // browsers without constructed stylesheets (no strict CSP support there)
      r.append(h("style", {}, CSS + cfg.style));
    }
    return r;
  }

  // While the banner is open the page gets room below its end, so that its last lines scroll
  // out from under the banner, and focus moving through the page is kept above it.
  const pad = new CSSStyleSheet();
  function room() {
    const y = banner ? innerHeight - banner.getBoundingClientRect().top : 0;
    pad.replaceSync(y > 0 ? "html{padding-bottom:" + y + "px!important;scroll-padding-bottom:" + y + "px}" : "");
  }

  // -- the stored choice: a first-party cookie -----------------------------------------------

  function readCookie() {
    const m = D.cookie.match(/(?:^|; )keksi_consent=([^;]*)/);
    try {
      const s = m && JSON.parse(decodeURIComponent(m[1]));
      return s && s.x > now() && s.c ? s : null;
    } catch (e) {
      return null;
    }
  }

  function writeCookie() { // (never in a preview: nothing is recorded there)
    const d = cfg.cookie_domain && cfg.cookie_domain.replace(/^\./, "");
    D.cookie = NAME + "=" + encodeURIComponent(JSON.stringify(state)) + "; path=/; max-age=" +
      (state.x - now()) + "; SameSite=Lax" + (location.protocol == "https:" ? "; Secure" : "") +
      (d && ("." + location.hostname).endsWith("." + d) ? "; domain=" + d : "");
  }

  // -- posting choices: a queue in localStorage until the server acknowledges each -------------

  // Where the browser blocks site data (localStorage throws), the queue lives as long as the page:
  // the choice is still posted, only not retried on a later page.
  let kept = [];
  function queue(items) {
    try {
      if (!items) return JSON.parse(localStorage.getItem(QUEUE)) || [];
      items.length ? localStorage.setItem(QUEUE, JSON.stringify(items)) : localStorage.removeItem(QUEUE);
    } catch (e) {
      return items ? kept = items : kept;
    }
  }

  // A network error, 429 or 5xx is tried again on this page after Retry-After (at least 1 s, at most
  // 60), doubling each time, four times; then on the next page, the "online" event or the next choice.
  let tries = 0;
  function flush(fresh) {
    const body = queue()[0];
    if (busy || !body) return;
    busy = 1;
    // fetch's defaults: credentials "same-origin", and a string body is sent as text/plain;charset=UTF-8
    // (a simple request, no preflight).
    fetch(cfg.endpoint + firstParty(queue().length < 2), {method: "POST", keepalive: true, body: JSON.stringify(body)})
      .then(r => r.status == 429 || r.status > 499 ? Promise.reject(r) :
        r.json().catch(() => ({})).then(a => r.ok ? a : refused(r.status, a)))
      .then(answer => { // acknowledged, or refused for good (a 4xx other than 429)
        const rest = queue().filter(b => b.event_id != body.event_id);
        if (answer) { // the server's subject, also where it replaced the one posted (erased since)
          rest.forEach(b => b.subject_id = !b.subject_id || b.subject_id == body.subject_id ?
            answer.subject_id : b.subject_id);
          if (state && !rest.length) {
            Object.assign(state, {s: answer.subject_id, i: answer.consent_id,
              x: Math.floor(Date.parse(answer.valid_until) / 1000) || state.x});
            firstParty(1) || writeCookie();
          }
          if (fresh) say(T.saved);
        }
        queue(rest);
        busy = tries = 0;
        flush(fresh);
      }, r => {
        busy = 0;
        if (fresh) say(T.pending);
        if (tries < 4) setTimeout(flush, 1e3 * Math.min(Math.max(r.headers?.get("Retry-After") | 0, 1), 60) << tries++);
      });
  }

  const say = text => status && (status.textContent = text);
  // A 4xx other than 429 can never succeed: the choice is dropped, and that is a bug to report.
  const refused = (code, a) => console.error("keksi: the server refused a choice (HTTP " + code + "): " +
    (a.message || a.error || "no reason given"));

  // First-party mode (README): served from this page's own origin, the API sets the stored choice
  // with Set-Cookie, which Safari and Brave keep for its whole lifetime (a script's cookie: 7 days).
  // Asked for the last queued choice only, so that an older one retried never replaces a newer one.
  function firstParty(last) {
    return last && new URL(cfg.endpoint).origin == location.origin ? "?cookie=1" : "";
  }

  // -- making a choice ------------------------------------------------------------------------

  // Every category as true or false, necessary on: the only shape the server accepts (a stored
  // choice holds 1 and 0, and a placeholder starts from it).
  const normal = choices => Object.fromEntries(cfg.categories.map(c => [c.id, c.required || !!choices[c.id]]));

  function choose(action, choices, ui) {
    const prev = state, ids = optional(), t = now(), c = {};
    choices = normal(choices);
    ids.forEach(id => c[id] = choices[id] ? 1 : 0);
    const granted = ids.some(id => c[id]);
    if (!granted && prev && ids.some(id => prev.c[id])) action = "withdraw";
    state = {s: prev && prev.s, i: null, c, v: cfg.notices.privacy.version, w: cfg.notices.cookies?.version,
      h: cfg.banner_hash.slice(0, 16), k: cfg.choice_hash.slice(0, 16), l: cfg.lang, t,
      x: t + (granted ? cfg.consent_days : cfg.refusal_days || cfg.consent_days) * 86400};
    if (!preview) record(action, choices, ui);
    if (dialog && dialog.open) dialog.close();
    if (banner) { // focus goes back to where it was before it entered the banner
      const focused = root.activeElement;
      banner.remove();
      banner = null;
      room();
      if (focused && back && back.isConnected) back.focus();
    }
    if (!preview) sweep();
    consentMode("update", mode(get));
    activate();
    if (stuck()) reloadNote();
    // Frozen, and each listener on its own: a tag that rewrites the choice or throws changes nothing
    // for the tags after it (the choice itself is already recorded).
    const detail = Object.freeze({action, choices: Object.freeze(choices)});
    listeners.forEach(fn => { try { fn(detail); } catch (e) { console.error(e); } });
    D.dispatchEvent(new CustomEvent("keksi:change", {detail}));
  }

  function record(action, choices, ui) {
    writeCookie();
    // A subject id is the server's 32 hex digits; anything else in the cookie (other code on the
    // domain wrote it) is no subject: the server gives a new one. The page is cut to the 512
    // characters the server keeps (keksi/consents.py PAGE_LENGTH), never inside a %-escape.
    queue(queue().concat({site, event_id: uuid(), subject_id: /^[0-9a-f]{32}$/.test(state.s) ? state.s : undefined,
      action, choices, notice_version: state.v, cookie_notice_version: state.w, banner_hash: cfg.banner_hash,
      lang: cfg.lang, ui_surface: ui, page: location.pathname.slice(0, 512).replace(/%.?$/, ""),
      widget_version: VERSION, gpc}));
    flush(1);
  }

  // Delete the cookies of refused categories, at the choice and on every later page load (a tag
  // or the server may set them again): on this host and its parent domains, on "/" and on each
  // folder of this page's path. HttpOnly cookies are out of a script's reach (widget/README.md).
  // A cookie that a granted (or necessary) category also lists stays, and so does our own.
  function sweep() {
    const refused = [], kept = [], host = location.hostname.split("."), paths = ["/"];
    for (const id in cfg.cookies) (get(id) ? kept : refused).push(...cfg.cookies[id]);
    const listed = (name, list) => list.some(p => p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name == p);
    location.pathname.split("/").slice(1, -1).reduce((at, part) => (paths.push(at += "/" + part, at + "/"), at), "");
    for (const pair of D.cookie.split("; ")) {
      const name = pair.split("=")[0];
      if (name == NAME || !listed(name, refused) || listed(name, kept)) continue;
      for (let i = 0; i <= host.length; i++) for (const path of paths) {
        D.cookie = name + "=; max-age=0; path=" + path + (i < host.length ? "; domain=" + host.slice(i).join(".") : "");
      }
    }
  }

  // -- what consent switches on: tagged scripts (in document order) and iframes ---------------

  let running;
  function activate() {
    if (!running) next();
    for (let f of D.querySelectorAll("iframe[data-consent][data-src]")) {
      if (allowed(f)) {
        if (f.k) f.k = f.k.remove();
        if (!f.hasAttribute("src")) f.src = f.dataset.src;
        f.hidden = false;
      } else if (!f.k && cfg) {
        if (f.hasAttribute("src")) { // loaded, now withdrawn: a new element, so its page and its scripts go
          const g = f.cloneNode();
          g.removeAttribute("src");
          f.replaceWith(g);
          f = g;
        }
        placeholder(f);
      }
    }
  }

  // In the iframe's place and size: which service and provider, and a button that grants its category.
  function placeholder(f) {
    const id = needs(f).find(c => !get(c));
    const cat = cfg.categories.find(c => c.id == id) || {label: id, services: []};
    const label = cat.label.toLowerCase(), name = (f.dataset.service || "").toLowerCase();
    const s = cat.services.find(s => s.name.toLowerCase() == name);
    const px = (v, measured) => v ? (/^\d+$/.test(v) ? v + "px" : v) : (measured || 300) + "px";
    const box = h("div", {class: "ph", lang: cfg.lang},
      h("p", {}, s ? fill(fill(fill(T.placeholder_service, "service", s.name), "provider", s.provider),
        "category", label) : fill(T.placeholder, "category", label)),
      button(fill(T.allow, "category", label), () => choose("custom",
        Object.assign({}, state && state.c, {[id]: true}), state ? "reopened" : "banner")));
    box.style.width = px(f.getAttribute("width"), f.offsetWidth);
    box.style.minHeight = px(f.getAttribute("height"), f.offsetHeight);
    shadow(f.k = h("div")).append(box);
    f.before(f.k);
    f.hidden = true;
  }

  // A script of a category now refused has run on this page: only a reload takes it away.
  const stuck = () => [...D.querySelectorAll("script[data-consent]:not([type])")].some(s => !allowed(s));

  function reloadNote() {
    ui();
    if (root.querySelector(".rl")) return;
    root.append(h("div", {class: "b rl", role: "alert", lang: cfg.lang},
      h("p", {}, T.reload_needed), button(T.reload, () => location.reload())));
  }

  function next() {
    const old = [...D.querySelectorAll('script[type="text/plain"][data-consent]')].find(allowed);
    running = !!old;
    if (!old) return;
    const s = D.createElement("script");
    for (const a of old.attributes) if (a.name != "type") s.setAttribute(a.name, a.value);
    s.nonce = old.nonce;
    s.text = old.text;
    if (s.src) s.onload = s.onerror = next;
    old.replaceWith(s);
    if (!s.src) next();
  }

  // -- the first layer -----------------------------------------------------------------------

  function ui() {
    if (root) return;
    const host = h("div", {"data-keksi": "", id: "keksi-consent"});
    D.body.prepend(host); // first in the tab order
    root = shadow(host);
    root.append(status = h("div", {role: "status", class: "v", lang: cfg.lang}));
  }

  function notice(key, text) {
    const n = cfg.notices[key];
    return n && h("span", {}, h("a", {href: n.url}, text), " (" + fill(T.last_updated, "date", n.last_updated) + ")");
  }

  function showBanner(from) {
    ui();
    banner = h("div", {class: "b", role: "region", "aria-label": T.region, lang: cfg.lang, tabindex: -1,
      onfocusin: e => back = banner.contains(e.relatedTarget) ? back : e.relatedTarget},
      h("h2", {}, T.title),
      from && changes(from),
      h("p", {}, T.intro),
      gpc && h("p", {}, T.gpc_honoured),
      h("p", {class: "n"}, notice("privacy", T.privacy_link), notice("cookies", T.cookies_link)),
      h("div", {class: "a"},
        button(T.accept_all, () => choose("accept_all", all(true), "banner"), null, "accept_all"),
        button(T.reject_all, () => choose("reject_all", all(false), "banner"), null, "reject_all"),
        button(T.choose, e => open("panel", e.currentTarget), null, "choose")));
    root.append(banner);
    D.adoptedStyleSheets = [...D.adoptedStyleSheets, pad];
    new ResizeObserver(room).observe(banner);
    W.addEventListener("resize", room);
    requestAnimationFrame(() => {
      P.mark("keksi:visible");
      // Focus moves into the banner (B10), unless the visitor is already somewhere on the page:
      // once the frame is painted, which a focus now (style and layout at once) would delay.
      setTimeout(() => {
        const a = D.activeElement;
        if (banner && (!a || a == D.body || a == D.documentElement)) banner.focus({preventScroll: true});
      });
    });
  }

  // Which notice changed, what its version says it changed, and its diff in a new tab, so the
  // visitor stays on the page they came to.
  function changes([slug, seen]) {
    const n = cfg.notices[slug];
    return h("div", {class: "w"}, h("p", {}, T[slug == "privacy" ? "changed" : "cookies_changed"]),
      n.change_summary && h("p", {}, n.change_summary),
      seen && h("p", {}, h("a", {href: n.diff_url.replace("{from}", () => seen), target: "_blank", rel: "noopener"},
        T.see_changes)));
  }

  // -- the panel: a modal dialog -------------------------------------------------------------

  function category(c) {
    const id = "k-" + c.id;
    const box = boxes[c.id] = h("input", {type: "checkbox", role: "switch", id, "aria-describedby": id + "-d",
      checked: c.required || get(c.id), disabled: c.required});
    const th = (text, scope) => h("th", {scope}, text);
    return h("div", {class: "c"},
      h("div", {class: "r"}, box, h("label", {for: id}, c.label), c.required && h("span", {}, T.always_on)),
      h("p", {id: id + "-d"}, c.purpose),
      c.services.length > 0 && h("details", {}, h("summary", {}, T.services),
        h("table", {}, h("thead", {}, h("tr", {}, [T.cookie, T.provider, T.purpose, T.duration].map(t => th(t, "col")))),
          c.services.map(s => h("tbody", {},
            h("tr", {}, h("th", {scope: "rowgroup", colspan: 4}, s.name + " (" + s.provider + ")")),
            s.cookies.map(k => h("tr", {}, th(k.name, "row"), h("td", {}, k.provider), h("td", {}, k.purpose),
              h("td", {}, k.duration))))))));
  }

  function open(ui_, from) {
    if (!cfg) return;
    ui();
    surface = ui_;
    opener = from || root.activeElement || D.activeElement;
    if (dialog) dialog.remove();
    boxes = {};
    const pending = queue().length > 0;
    dialog = h("dialog", {class: "d", "aria-labelledby": "k-t", lang: cfg.lang, onkeydown: trap,
      onclose: () => opener && opener.isConnected && opener.focus()},
      h("div", {class: "t"}, h("h2", {id: "k-t"}, T.panel_title), button(T.close, () => dialog.close(), "x")),
      gpc && h("p", {}, T.gpc_honoured),
      state && (pending ? h("p", {}, T.pending) : state.i && h("p", {},
        T.consent_id + ": ", h("code", {}, state.i), " ",
        h("a", {href: cfg.receipt_url.replace("{consent_id}", () => state.i), target: "_blank", rel: "noopener"}, T.receipt))),
      cfg.categories.map(category),
      h("div", {class: "a"},
        button(T.accept_all, () => choose("accept_all", all(true), surface), null, "accept_all"),
        button(T.reject_all, () => choose("reject_all", all(false), surface), null, "reject_all"),
        button(T.save, () => {
          const choices = {};
          for (const id in boxes) choices[id] = boxes[id].checked;
          choose(optional().some(id => choices[id]) ? "custom" : "reject_all", choices, surface);
        }, null, "save")));
    root.append(dialog);
    dialog.showModal();
  }

  function trap(e) { // keep Tab inside the dialog, also past its last control
    if (e.key != "Tab") return;
    const f = [...dialog.querySelectorAll("a[href],button,input:not([disabled]),summary")];
    const a = root.activeElement;
    if (e.shiftKey ? a == f[0] : a == f[f.length - 1]) {
      e.preventDefault();
      f[e.shiftKey ? f.length - 1 : 0].focus();
    }
  }

  // -- start ---------------------------------------------------------------------------------

  W.keksi = {
    get,
    open: () => open("reopened"),
    on: (type, fn) => type == "change" && listeners.push(fn),
  };
  // Tagged scripts start once the configuration is here (the browser keeps it five minutes), so
  // that a site's other consent signals reach their vendors first; without it, on the stored choice.

  config
    .then(c => ready(() => {
      if (!c.notices.privacy) throw Error("the site has no privacy notice in effect");
      cfg = c;
      T = c.texts;
      if (!preview) { // a preview sends nothing, not even what Keksi's own pages left queued
        setTimeout(flush, 50); // after the banner's first frame
        W.addEventListener("online", () => flush());
      }
      D.addEventListener("click", e => {
        const link = e.target.closest?.("[data-consent-open]");
        if (link) {
          e.preventDefault();
          open("reopened", link);
        }
      });
      // A material version of either notice in effect since the choice: say which, link its diff.
      // A choice stored without the version seen (an older widget, or no cookie notice then)
      // is compared by its date where versions take effect, and the banner has no diff link.
      const day = t => { // YYYY-MM-DD in the server's time zone (sv-SE writes dates that way)
        try { return new Date(t * 1000).toLocaleDateString("sv-SE", {timeZone: c.timezone}); }
        catch (e) { return new Date(t * 1000).toISOString().slice(0, 10); }
      };
      const ids = optional(), since = slug => {
        const n = c.notices[slug], seen = state && state[slug == "privacy" ? "v" : "w"];
        const after = seen || (state && (state.t > 0 ? day(state.t) : "0"));
        return n && after && n.latest_material_version > after && [slug, seen];
      };
      // A material notice change re-asks those who granted something; one who refused everything
      // consented to nothing it could change (their refusal stands until it expires).
      const changed = state && ids.some(id => state.c[id]) && (since("privacy") || since("cookies"));
      // A choice without the hash of what it covered (an older widget) cannot show that it
      // still applies: ask again.
      if (!state || changed || (state.l == c.lang && state.h != c.banner_hash.slice(0, 16)) ||
          state.k != c.choice_hash.slice(0, 16) ||
          ids.length != Object.keys(state.c).length || ids.some(id => !(id in state.c))) {
        showBanner(changed);
      }
      if (state) sweep(); // (never in a preview, which has no stored choice)
      // Consent signals for vendors other than Google (signals.js), for a site that declares such a
      // service: the first of the tagged scripts, so each vendor hears of the choice before its tag.
      if (c.signals && !preview) D.head.prepend(h("script", {type: "text/plain", "data-consent": "necessary",
        src: c.signals}));
      activate();
      if (location.hash == "#keksi-settings") open("reopened"); // the receipt's "change or withdraw"
      P.mark("keksi:ready");
    }))
    .catch(e => (console.error("keksi:", e), state && ready(activate)));
})();
