"""A site's figures for a range of days: choices per day and each category's opt-in rate.

Built only on the store's daily aggregates (`daily_actions`, `daily_categories`),
which hold one row per site, day and action or category: a year of figures is a
few thousand rows however many millions of choices the ledger holds. The charts
are plain SVG strings made here, on the server; the view passes every text and
number format in, so nothing here needs a request.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any, Callable

from markupsafe import Markup, escape

from . import consents
from .consents import ACTIONS
from .store import Store

DEFAULT_DAYS = 30
MAX_DAYS = 366
WEEKLY_AFTER = 62  # longer ranges are charted per week (the tables stay per day)


class RangeError(ValueError):
    """A range of days that cannot be shown; `errors` maps "from"/"to" to a problem code."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))


def parse_range(first: str | None, last: str | None, today: date,
                max_days: int | None = MAX_DAYS) -> tuple[date, date]:
    """The days from `first` to `last` (YYYY-MM-DD, both included); by default the last 30 days.

    Raises RangeError with the codes "invalid" (not a date), "order" (from after to)
    and "too_long" (more than `max_days` days).
    """
    errors: dict[str, str] = {}
    parsed: dict[str, date | None] = {}
    for name, value in (("from", first), ("to", last)):
        value = (value or "").strip()
        if not value:
            parsed[name] = None
            continue
        try:
            parsed[name] = date.fromisoformat(value)
            if len(value) != 10:  # fromisoformat also takes 20261122 and week dates
                raise ValueError(value)
        except ValueError:
            errors[name] = "invalid"
    if errors:
        raise RangeError(errors)
    end = parsed["to"] or today
    start = parsed["from"] or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise RangeError({"from": "order"})
    if max_days is not None and (end - start).days + 1 > max_days:
        raise RangeError({"to": "too_long"})
    return start, end


@dataclass
class CategoryFigure:
    id: str
    granted: int = 0
    total: int = 0
    per_day: dict[date, tuple[int, int]] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.granted / self.total if self.total else None


@dataclass
class Figures:
    site: str
    first: date
    last: date
    days: list[date]
    actions: dict[date, dict[str, int]]  # every day of the range, every action, zero included
    categories: list[CategoryFigure]

    @property
    def totals(self) -> dict[str, int]:
        return {a: sum(self.actions[d][a] for d in self.days) for a in ACTIONS}

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    def day_total(self, day: date) -> int:
        return sum(self.actions[day].values())


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def load(store: Store, site: dict[str, Any], first: date, last: date) -> Figures:
    """The site's figures from the daily aggregates; days with no choices count zero."""
    days = _days(first, last)
    actions = {d: {a: 0 for a in ACTIONS} for d in days}
    for row in store.daily_actions(site["id"], first.isoformat(), last.isoformat()):
        day = date.fromisoformat(row["day"])
        if day in actions:
            actions[day][row["action"]] = actions[day].get(row["action"], 0) + row["n"]
    order = [c["id"] for c in site["categories"]]
    categories: dict[str, CategoryFigure] = {cid: CategoryFigure(cid) for cid in order}
    for row in store.daily_categories(site["id"], first.isoformat(), last.isoformat()):
        figure = categories.setdefault(row["category"], CategoryFigure(row["category"]))
        day = date.fromisoformat(row["day"])
        figure.granted += row["granted"]
        figure.total += row["total"]
        figure.per_day[day] = (row["granted"], row["total"])
    # The site's categories in its order; any since removed from the site after them.
    ordered = [categories[c] for c in order] + [categories[c] for c in sorted(set(categories) - set(order))]
    return Figures(site["id"], first, last, days, actions, ordered)


def to_csv(figures: Figures) -> str:
    """Day, each action's count and total, then each category's granted and total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cats = figures.categories
    writer.writerow(["day", *ACTIONS, "total",
                     *(f"{c.id}_{part}" for c in cats for part in ("granted", "total"))])
    for day in figures.days:
        counts = figures.actions[day]
        writer.writerow([day.isoformat(), *(counts[a] for a in ACTIONS), figures.day_total(day),
                         *(n for c in cats for n in c.per_day.get(day, (0, 0)))])
    totals = figures.totals
    writer.writerow(["total", *(totals[a] for a in ACTIONS), figures.total,
                     *(n for c in cats for n in (c.granted, c.total))])
    return out.getvalue()


# -- proof: the figures are derivable from the ledger ---------------------------------


@dataclass
class FiguresCheck:
    """The daily figures against those derived from the records held plus the counts each removal
    took out. `mismatches` are (site, day, what, kept, derived); `uncounted` removals made before
    removals were counted (migration 0008) leave the figures up to `unproven_until` (the day of
    the last of them) unprovable where they are higher than derived, rather than wrong."""

    checked: int
    mismatches: list[tuple[str, str, str, Any, Any]]
    uncounted: int = 0
    unproven_until: str | None = None

    @property
    def ok(self) -> bool:
        return not self.mismatches


def check(store: Store, zone: tzinfo) -> FiguresCheck:
    """Recompute every daily figure from the ledger (days in `zone`) and compare it with the one kept."""
    day_of = consents.day_of_in(zone)
    actions: Counter = Counter()
    categories: Counter = Counter()
    checked = 0
    for row in store.iter_consents():
        day = day_of(row["recorded_at"])
        actions[(row["site"], day, row["action"])] += 1
        for category, granted in json.loads(row["choices"]).items():
            categories[(row["site"], day, category, "granted")] += int(granted)
            categories[(row["site"], day, category, "total")] += 1
        checked += 1
    kept = store.figure_rows()
    for site, day, action, n in kept["removed_actions"]:
        actions[(site, day, action)] += n
    for site, day, category, granted, total in kept["removed_categories"]:
        categories[(site, day, category, "granted")] += granted
        categories[(site, day, category, "total")] += total
    stored_actions = Counter({(site, day, action): n for site, day, action, n in kept["actions"]})
    stored_categories: Counter = Counter()
    for site, day, category, granted, total in kept["categories"]:
        stored_categories[(site, day, category, "granted")] = granted
        stored_categories[(site, day, category, "total")] = total
    mismatches = [(site, day, what, stored_actions[key], actions[key])
                  for key in sorted(set(actions) | set(stored_actions)) if stored_actions[key] != actions[key]
                  for site, day, what in [key]]
    mismatches += [(site, day, f"{category} {part}", stored_categories[key], categories[key])
                   for key in sorted(set(categories) | set(stored_categories))
                   if stored_categories[key] != categories[key] for site, day, category, part in [key]]
    uncounted, last_removed_at = store.uncounted_removals()
    if not uncounted:
        return FiguresCheck(checked, mismatches)
    # Such a removal took records out uncounted, but only records made before it: a figure of a
    # later day, or one lower than the records still held give, is wrong all the same.
    until = day_of(last_removed_at)
    return FiguresCheck(checked, [m for m in mismatches if m[1] > until or m[3] < m[4]], uncounted, until)


# -- charts ---------------------------------------------------------------------------

# Each series has its own colour AND its own fill pattern, so that the chart reads in
# greyscale, in print and for people who do not tell the colours apart.
SERIES_STYLE = {
    "accept_all": {"colour": "#0b57a4", "pattern": "solid"},
    "reject_all": {"colour": "#8a1c1c", "pattern": "stripes"},
    "custom": {"colour": "#7a4a00", "pattern": "dots"},
    "withdraw": {"colour": "#1b1f24", "pattern": "cross"},
}
TEXT = "#1b1f24"
MUTED = "#4a5260"
GRID = "#d0d7de"


def _n(value: float) -> str:
    """A coordinate with at most one decimal."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _patterns(prefix: str) -> str:
    parts = ["<defs>"]
    for action, style in SERIES_STYLE.items():
        colour, kind = style["colour"], style["pattern"]
        pid = f"{prefix}-{action}"
        if kind == "solid":
            parts.append(f'<pattern id="{pid}" width="8" height="8" patternUnits="userSpaceOnUse">'
                         f'<rect width="8" height="8" fill="{colour}"/></pattern>')
        elif kind == "stripes":
            parts.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse" '
                         f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f6dcdc"/>'
                         f'<rect width="3" height="6" fill="{colour}"/></pattern>')
        elif kind == "dots":
            parts.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
                         f'<rect width="6" height="6" fill="#fbecc8"/>'
                         f'<circle cx="3" cy="3" r="1.6" fill="{colour}"/></pattern>')
        else:
            parts.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
                         f'<rect width="6" height="6" fill="#ffffff"/>'
                         f'<path d="M0 0L6 6M6 0L0 6" stroke="{colour}" stroke-width="1.2"/></pattern>')
    parts.append("</defs>")
    return "".join(parts)


def nice_ceiling(value: int) -> int:
    """The top of the y axis: four gridlines apart by a round whole step (1, 2, 2.5 or 5 × 10^k)."""
    step = max(1, -(-value // 4))
    magnitude = 1
    while True:
        for nice in (1, 2, 2.5, 5):
            candidate = nice * magnitude
            if candidate >= step and candidate == int(candidate):
                return int(candidate) * 4
        magnitude *= 10


def bins(figures: Figures) -> list[tuple[date, date, dict[str, int]]]:
    """The bars to draw: one per day, or one per 7 days for long ranges."""
    size = 7 if len(figures.days) > WEEKLY_AFTER else 1
    result = []
    for start in range(0, len(figures.days), size):
        days = figures.days[start:start + size]
        counts = {a: sum(figures.actions[d][a] for d in days) for a in ACTIONS}
        result.append((days[0], days[-1], counts))
    return result


def _svg_open(chart_id: str, width: int, height: int, title: str, desc: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'viewBox="0 0 {width} {height}" aria-labelledby="{chart_id}-title {chart_id}-desc" '
            f'font-family="system-ui, sans-serif" font-size="13">'
            f'<title id="{chart_id}-title">{escape(title)}</title>'
            f'<desc id="{chart_id}-desc">{escape(desc)}</desc>')


def actions_chart(figures: Figures, *, chart_id: str, title: str, desc: str, labels: dict[str, str],
                  day_label: Callable[[date], str], axis_label: Callable[[date], str],
                  number: Callable[[int], str], empty: str) -> Markup:
    """Stacked bars of the choices per day (or week), each action with its colour and pattern."""
    width, height = 720, 330
    left, right, top, bottom = 56, 12, 44, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    bars = bins(figures)
    peak = max((sum(c.values()) for _, _, c in bars), default=0)
    ceiling = nice_ceiling(peak)
    out = [_svg_open(chart_id, width, height, title, desc), _patterns(chart_id)]

    # The legend, on top: a swatch in the series' pattern, then its name.
    x = left
    for action in ACTIONS:
        out.append(f'<rect x="{x}" y="8" width="16" height="16" fill="url(#{chart_id}-{action})" '
                   f'stroke="{TEXT}" stroke-width="1"/>')
        out.append(f'<text x="{x + 22}" y="21" fill="{TEXT}">{escape(labels[action])}</text>')
        x += 40 + 8 * len(labels[action])

    # Gridlines and the y axis.
    for i in range(5):
        value = ceiling * i // 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(y)}" y2="{_n(y)}" '
                   f'stroke="{GRID if i else MUTED}" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{_n(y + 4)}" text-anchor="end" fill="{MUTED}">'
                   f'{escape(number(value))}</text>')

    slot = plot_w / max(len(bars), 1)
    bar_w = max(slot * 0.8, 1)
    every = max(1, -(-len(bars) // 7))  # at most about seven date labels
    for i, (start, end, counts) in enumerate(bars):
        x0 = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        when = day_label(start) if start == end else f"{day_label(start)}–{day_label(end)}"
        tip = "; ".join(f"{labels[a]} {number(counts[a])}" for a in ACTIONS)
        out.append(f"<g><title>{escape(when)}: {escape(tip)}</title>")
        for action in ACTIONS:
            n = counts[action]
            if not n:
                continue
            h = plot_h * n / ceiling
            y -= h
            out.append(f'<rect x="{_n(x0)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(h)}" '
                       f'fill="url(#{chart_id}-{action})" stroke="#ffffff" stroke-width="0.5"/>')
        out.append("</g>")
        if i % every == 0:
            cx = left + i * slot + slot / 2
            out.append(f'<text x="{_n(cx)}" y="{height - bottom + 18}" text-anchor="middle" '
                       f'fill="{MUTED}">{escape(axis_label(start))}</text>')
    if peak == 0:
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
                   f'fill="{TEXT}">{escape(empty)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def opt_in_chart(figures: Figures, *, chart_id: str, title: str, desc: str,
                 category_label: Callable[[str], str], percent: Callable[[float], str],
                 number: Callable[[int], str], no_data: str) -> Markup:
    """One horizontal bar per category: the share of choices that granted it, written beside it."""
    cats = figures.categories
    row_h, top, left, right = 34, 28, 150, 190
    width = 720
    height = top + row_h * max(len(cats), 1) + 10
    plot_w = width - left - right
    out = [_svg_open(chart_id, width, height, title, desc)]
    for i in range(5):
        x = left + plot_w * i / 4
        out.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{top - 6}" y2="{height - 10}" stroke="{GRID}"/>')
        out.append(f'<text x="{_n(x)}" y="{top - 10}" text-anchor="middle" fill="{MUTED}">'
                   f'{escape(percent(i / 4))}</text>')
    for i, cat in enumerate(cats):
        y = top + i * row_h
        out.append(f'<text x="{left - 8}" y="{y + 21}" text-anchor="end" fill="{TEXT}">'
                   f'{escape(category_label(cat.id))}</text>')
        out.append(f'<rect x="{left}" y="{y + 6}" width="{plot_w}" height="22" fill="#f3f5f7" '
                   f'stroke="{MUTED}" stroke-width="1"/>')
        if cat.rate is None:
            value = no_data
        else:
            if cat.rate > 0:
                out.append(f'<rect x="{left}" y="{y + 6}" width="{_n(plot_w * cat.rate)}" height="22" '
                           f'fill="#0b57a4"/>')
            value = f"{percent(cat.rate)} ({number(cat.granted)} / {number(cat.total)})"
        out.append(f'<text x="{left + plot_w + 8}" y="{y + 21}" fill="{TEXT}">{escape(value)}</text>')
    out.append("</svg>")
    return Markup("".join(out))

