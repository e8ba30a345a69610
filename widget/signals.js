/* Keksi consent signals: the consent APIs of vendors other than Google (whose Consent Mode is in
 * consent.js), for a site whose declaration names their services. Embedding: widget/README.md.
 *
 * consent.js loads this script only for such a site, from the `signals` URL of the site's
 * configuration, ahead of every tagged script. Its query string names each consent API and the
 * category the site declares that service in (keksi/sites.py, consent_signals), for example
 * ?clarity=analytics&uet=marketing. Each API gets its "before any choice" call at once, the
 * stored choice when that grants the category, and every later choice. Built (minified) and served
 * like consent.js by keksi/widget.py. */
(() => {
  "use strict";
  const W = window, keksi = W.keksi, me = document.currentScript;
  if (!keksi || !me) return;
  const state = (...ids) => ids.every(id => keksi.get(id)) ? "granted" : "denied";
  // A vendor's queue as its own snippet starts it: what is pushed before its script loads waits there.
  const queue = name => W[name] = W[name] || [];
  function clarity(...args) { // Clarity's own stub, which its snippet keeps
    W.clarity = W.clarity || function () { (W.clarity.q = W.clarity.q || []).push(arguments); };
    W.clarity(...args);
  }
  const fbq = (...args) => W.fbq && W.fbq(...args);

  // Per API: [the call before any choice, the call for the state of the category `id`].
  const apis = {
    // Microsoft Advertising UET consent mode: the default must be in the queue before the UET tag runs.
    uet: [() => queue("uetq").push("consent", "default", {ad_storage: "denied"}),
      id => queue("uetq").push("consent", "update", {ad_storage: state(id)})],
    // Microsoft Clarity consent API v2: analytics storage follows Clarity's own category; ad storage
    // serves advertising, so it also needs marketing.
    clarity: [() => clarity("consentv2", {ad_Storage: "denied", analytics_Storage: "denied"}),
      id => clarity("consentv2", {ad_Storage: state(id, "marketing"), analytics_Storage: state(id)})],
    // Matomo: requireConsent sends no tracking request at all until consent (requireCookieConsent
    // would still track, only without cookies). Consent is given for this page view only, since
    // Keksi keeps the choice (no mtm_consent cookie), and taken back by requiring it again
    // (forgetConsentGiven would write an mtm_consent_removed cookie for 30 years).
    matomo: [() => queue("_paq").push(["requireConsent"]),
      id => queue("_paq").push([keksi.get(id) ? "setConsentGiven" : "requireConsent"])],
    // Meta Pixel: only to a pixel already on the page. A stub of ours would stop the pixel's own
    // snippet from loading it, so a pixel that runs before a choice cannot be told in time: tag it.
    meta: [() => fbq("consent", "revoke"), id => fbq("consent", keksi.get(id) ? "grant" : "revoke")],
  };

  for (const [api, id] of new URL(me.src).searchParams) {
    const [before, update] = apis[api] || [];
    if (!before) continue;
    before();
    if (keksi.get(id)) update(id);
    keksi.on("change", () => update(id));
  }
})();
