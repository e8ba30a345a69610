/* The admin's small enhancements. Without JavaScript every page still works: the copy
 * buttons are made here, so they exist only where they can work. No inline script anywhere
 * (the CSP is script-src 'self'). */
(() => {
  "use strict";

  function selectText(el) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  async function copy(text, el) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (e) { /* refused: fall back to the selection */ }
    }
    selectText(el);
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  // <div data-copy data-copy-label="…" data-copied="…" data-copy-failed="…">
  //   <pre><code>…</code></pre><p class="copy-status" aria-live="polite"></p></div>
  for (const block of document.querySelectorAll("[data-copy]")) {
    const code = block.querySelector("code");
    const status = block.querySelector("[aria-live]");
    if (!code || !status) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button copy-button";
    button.textContent = block.dataset.copyLabel;
    button.addEventListener("click", async () => {
      const ok = await copy(code.textContent, code);
      status.textContent = "";
      // A fresh text node each time, so that a second copy is announced again.
      setTimeout(() => { status.textContent = ok ? block.dataset.copied : block.dataset.copyFailed; }, 50);
      if (!ok) selectText(code);
    });
    block.insertBefore(button, status);
  }

  // An error summary's links move focus into their field, not just the view: a link to a
  // fragment only scrolls, so keyboard and screen-reader users would be left at the top.
  for (const link of document.querySelectorAll(".error-summary a[href^='#']")) {
    link.addEventListener("click", (event) => {
      const field = document.getElementById(link.hash.slice(1));
      if (!field) return;
      event.preventDefault();
      const label = document.querySelector(`label[for="${field.id}"]`);
      (label || field).scrollIntoView();
      field.focus({ preventScroll: true });
    });
  }

  // The site form's live preview of the banner's look: the server answers with the widget's own
  // stylesheet, the look's custom properties and what its colours fail (WCAG 2.2 AA), so the
  // preview is the banner as visitors will see it and the form checks exactly what saving checks.
  const preview = document.querySelector("[data-theme-preview]");
  const look = preview && preview.closest(".look");
  if (look) {
    const problems = preview.querySelector("[data-theme-problems]");
    const frame = document.createElement("div");
    frame.className = "theme-preview";
    const host = document.createElement("div");
    host.inert = true; // a picture of the banner: its buttons do nothing, so they are out of reach
    host.setAttribute("aria-hidden", "true");
    frame.append(host);
    preview.append(frame);
    const root = host.attachShadow({mode: "open"});
    const sheet = new CSSStyleSheet(), fit = new CSSStyleSheet();
    fit.replaceSync(".b{max-height:100%}"); // the box, not the window, is the preview's viewport
    root.adoptedStyleSheets = [sheet, fit];
    let asked = 0, timer;

    function banner(texts, lang) {
      const el = (tag, cls, text) => {
        const node = document.createElement(tag);
        if (cls) node.className = cls;
        if (text) node.textContent = text;
        return node;
      };
      const box = el("div", "b");
      box.lang = lang;
      const links = el("p", "n");
      const link = el("a", null, texts.privacy_link);
      link.href = "#";
      links.append(link);
      const actions = el("div", "a");
      for (const key of ["accept_all", "reject_all", "choose"]) actions.append(el("button", null, texts[key]));
      box.append(el("h2", null, texts.title), el("p", null, texts.intro), links, actions);
      root.replaceChildren(box);
    }

    async function refresh() {
      const mine = ++asked;
      const query = new URLSearchParams({lang: preview.dataset.lang, site: preview.dataset.site || ""});
      for (const input of look.querySelectorAll("[name^=theme_]")) query.set(input.name.slice(6), input.value);
      try {
        const response = await fetch(preview.dataset.themePreview + "?" + query, {credentials: "same-origin"});
        const answer = await response.json();
        if (mine !== asked) return; // a later change has asked again
        sheet.replaceSync(answer.css);
        if (!root.firstChild) banner(answer.texts, answer.lang);
        problems.textContent = answer.problems.join(" ");
      } catch (e) {
        problems.textContent = "";
      }
    }

    look.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(refresh, 150);
    });
    refresh();
  }
})();
