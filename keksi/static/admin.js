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
})();
