-- SQLite's migration 0015: code escrow for widget/signals.js too, which the widget loads on the pages
-- of sites that declare services with consent APIs: each build served is kept beside the widget's,
-- named by its file.
ALTER TABLE widget_builds ADD COLUMN file TEXT NOT NULL DEFAULT 'consent.js';
