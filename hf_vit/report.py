"""A self-contained HTML report of an evaluation folder: open report.html from disk, no server, no network.

`write_report(output_dir)` reads what `hf_vit.analysis.evaluate_model` wrote
(metrics.json, misclassified.csv, the pictures) and writes report.html: the
metrics, the per-class table, the summary pictures (embedded as data URIs;
the confusion matrix's counts also as a table, or its most frequent
confusions over 100 classes; the five most frequent named in a line, each a
link that filters the cards to it and brings them into view), and one card per mistake,
sorted by confidence and filterable by true and predicted class with two
<select>s. The first FIRST_CARDS cards are on the page; the rest wait in a
<template> that a "Show more" button or a filter brings in. The cards point at
misclassified/ and attention/ by relative path (thousands of images would make
one huge file), so keep report.html inside its folder. A filter can also come
in the URL: report.html#true=cat&pred=dog (a class the evaluation lacks is
named under the filters, its filter left off). The page aims at WCAG 2.1 AA: table
headers and captions, alts that say what a picture shows, a live filter count,
and a layout that reflows down to 320 CSS px.
"""

import base64
import csv
import html
import json
import struct
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from .metrics import (
    class_score,
    macro_scope,
    no_score_note,
    part_of_split,
    per_class_scores,
    percent,
    shown_top_k,
)
from .output_folder import replace_text
from .spreadsheet import csv_value

# (file, caption, alt): the alt says what the picture shows and where its numbers are as text.
SUMMARY_PICTURES = (
    ("confusion_matrix.png", "Confusion matrix",
     "Confusion matrix as a heat map: rows are the true classes, columns the predicted ones; darker = larger share "
     "of the true class; counts in the table below."),  # over FULL_CONFUSION_TABLE classes: see _alt
    ("per_class_accuracy.png", "Accuracy per class",
     "Bar chart of the recall (accuracy) column of the Per class table, one bar per class, with a line at the "
     "overall accuracy."),
    ("gallery.png", "Most confident mistakes",
     "The most confident mistakes with their true class, predicted class, confidence and index, as listed in the "
     "first cards below, in the same order."),
)
# What the attention maps' colours mean (see hf_vit.attention_maps.heat_map_image): said in the text and alts.
ATTENTION_KEY = "brighter = more attention (black = least, pale yellow = most; the key is under the maps)"
# By the scale metrics.json records (attention_maps.HEAT_SCALE_NAME). Folders from before the record may hold
# pictures of the older blue -> yellow -> red scale (or already inferno): the page says only what is sure.
ATTENTION_KEYS = {"inferno": ATTENTION_KEY}
# What the maps follow, by the pooling metrics.json records (evaluation.attention_follows, from config.pool).
# Folders from before the record drew [CLS]'s maps whatever the pooling (with a note for a mean-pooled model).
ATTENTION_MAPS = {
    "cls": "the attention rollout through all layers into [CLS], and the last layer's [CLS] attention",
    "mean": "the attention rollout through all layers into the mean-pooled vector the head reads (the mean of all "
            "tokens' rollout rows), and the last layer's attention into it (all tokens' rows averaged)",
}
UNRECORDED_KEY = (
    "colour = attention, on a scale this evaluation does not record (older evaluations drew red = more, "
    "blue = less); evaluate again for the current scale and its key"
)
# Cards written into the page at first; the rest wait in a <template> for "Show more" or a filter (a page of
# thousands of cards is megabytes of elements). misclassified.csv holds them all.
FIRST_CARDS = 200
# The confusion matrix as a full table up to this many classes (1000 classes made a 10 MB page); above it, the
# TOP_CONFUSIONS largest off-diagonal counts, and metrics.json holds the matrix.
FULL_CONFUSION_TABLE, TOP_CONFUSIONS = 100, 20
# Under the filters when no card is shown: none of the mistakes matches, or there are none at all.
NO_MATCH, NO_MISTAKES = "No mistakes match these filters.", "The model made no mistakes on this split."
NO_MISTAKES_IN_SAMPLE = "The model made no mistakes on these images (part of the split: see above)."

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
/* the title and meta line name the model's folder: a long path breaks anywhere rather than widen the page */
h1, .meta, #top-confusions { overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
caption { text-align: left; color: #666; padding: 2px 0; }
.scroll { overflow-x: auto; max-width: 100%; } .scroll table { margin-top: 0; }
figure { display: inline-block; margin: 0 1.5em 1.5em 0; vertical-align: top; }
figure img { border: 1px solid #ddd; max-width: 100%; height: auto; } figcaption { color: #666; font-size: 0.9em; }
details { margin: 0 0 1.5em; }
.filters { position: sticky; top: 0; background: #fff; padding: 0.6em 0; border-bottom: 1px solid #ddd; }
/* on a small or zoomed screen a sticky bar would cover much of the page */
@media (max-width: 600px), (max-height: 500px) { .filters { position: static; } }
.filters label { margin-right: 1.2em; display: inline-block; max-width: 100%; }
/* a long class name wraps (or the select shrinks) instead of widening a 320px screen */
.filters select { max-width: 100%; }
#cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 1em 0; padding: 0; list-style: none; }
/* 490px: the thumbnail column and a 400px attention strip at its natural size; narrower screens shrink it */
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px; box-sizing: border-box;
        width: 100%; max-width: 490px; }
.card h3 { font-size: 0.95em; margin: 0 0 6px; } .card-body { display: flex; flex-wrap: wrap; gap: 8px; }
.card-body > div { flex: 1 1 240px; min-width: 0; }
.card .thumb { width: 64px; height: 64px; image-rendering: pixelated;
               object-fit: contain; /* an image that is not square whole in the box, not stretched */ }
.card .att { max-width: 100%; height: auto; } .card p { margin: 2px 0; font-size: 0.85em; }
.card h3, .card p { overflow-wrap: anywhere; }
.wrong { color: #c82828; font-weight: bold; } .muted { color: #666; }
"""

SCRIPT = """
(function () {
  const PAGE = %d;
  const box = document.getElementById('cards');
  const later = document.getElementById('more-cards');
  // Every card, most confident first (the page is written in that order): those on the page, then the template's.
  const cards = Array.from(box.children).concat(later ? Array.from(later.content.children) : []);
  const selTrue = document.getElementById('filter-true');
  const selPred = document.getElementById('filter-pred');
  const count = document.getElementById('shown-count');
  const none = document.getElementById('no-match');
  const stray = document.getElementById('unknown-class');
  const more = document.getElementById('show-more');
  let limit = PAGE, shown = [];  // shown: the cards on view, in page order
  function apply() {
    let matched = 0, last = null;
    shown = [];
    for (const c of cards) {
      const ok = (!selTrue.value || c.dataset.true === selTrue.value) &&
                 (!selPred.value || c.dataset.pred === selPred.value);
      const show = ok && matched < limit;
      if (ok) matched++;
      // A card from the template goes in after the last card on the page before it: the order stays.
      if (show && c.parentNode !== box) box.insertBefore(c, last ? last.nextSibling : box.firstChild);
      if (c.parentNode === box) { c.style.display = show ? '' : 'none'; last = c; }
      if (show) shown.push(c);
    }
    count.textContent = shown.length + ' of ' + matched;  // of those that match, not of all mistakes
    none.hidden = matched > 0;
    if (more) {
      more.hidden = matched === shown.length;
      more.textContent = 'Show ' + Math.min(PAGE, matched - shown.length) + ' more';
    }
    const parts = [];
    if (selTrue.value) parts.push('true=' + encodeURIComponent(selTrue.value));
    if (selPred.value) parts.push('pred=' + encodeURIComponent(selPred.value));
    history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname + location.search);
  }
  // Focus goes to the first card the button brought in: the last click hides the button, and focus on a
  // hidden button would be lost (back to the top of the page for the keyboard).
  function showMore() {
    const before = shown.length;
    limit += PAGE;
    apply();
    const first = shown[before];
    if (first) { first.tabIndex = -1; first.focus(); }
  }
  // A class in the address that the evaluation does not have (a typo, a link to another evaluation) leaves its
  // filter off: said under the filters, or the reader would take every card for that class's.
  function fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const unknown = [];
    for (const [sel, key, what] of [[selTrue, 'true', 'true'], [selPred, 'pred', 'predicted']]) {
      const v = params.get(key);
      const known = v !== null && Array.from(sel.options).some(o => o.value === v);
      sel.value = known ? v : '';
      if (v && !known) unknown.push(what + ' class "' + v + '"');
    }
    stray.textContent = unknown.length ? ' The address asks for ' + unknown.join(' and ') + ', which this ' +
      'evaluation has no class called: ' + (unknown.length > 1 ? 'those filters are' : 'that filter is') + ' off.' : '';
    stray.hidden = !unknown.length;
  }
  function refilter() { limit = PAGE; apply(); }
  function chosen() { stray.hidden = true; refilter(); }  // the reader's own choice replaces the address's
  // A filter from a link (the confusions named under the pictures) changed cards a screen or more below it, and
  // the reader saw nothing happen: the filters and the cards come into view, and the keyboard's focus goes to
  // the first card (on a link from another page, the scroll only).
  function reveal(focus) {
    // back to no filter: the browser puts the page where it was (a class the address names in vain: its line shows)
    if (!selTrue.value && !selPred.value && stray.hidden) return;
    document.getElementById('mistakes').scrollIntoView({block: 'start'});
    if (focus && shown[0]) { shown[0].tabIndex = -1; shown[0].focus({preventScroll: true}); }
  }
  selTrue.addEventListener('change', chosen);
  selPred.addEventListener('change', chosen);
  if (more) more.addEventListener('click', showMore);
  window.addEventListener('hashchange', () => { fromHash(); refilter(); reveal(true); });
  // A link to the filter already shown changes no hash, so no hashchange: the click alone brings the cards back.
  // (A click with a modifier key opens a tab or window: left to the browser.)
  document.addEventListener('click', event => {
    const link = event.target.closest && event.target.closest('a[href^="#"]');
    const plain = !(event.ctrlKey || event.metaKey || event.shiftKey || event.altKey);
    if (link && plain && link.hash === location.hash) { event.preventDefault(); reveal(true); }
  });
  fromHash();
  apply();
  reveal(false);
})();
""" % FIRST_CARDS


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _pct(x) -> str:
    return f"{100 * float(x):.2f}%"


def _metrics_table(metrics: dict) -> str:
    rows = [("accuracy", _pct(metrics["accuracy"]))]
    for k in shown_top_k(metrics):  # no top-3 row for 3 classes: 100% for any model
        rows.append((k.replace("_", " "), _pct(metrics[k])))
    over = macro_scope(metrics["per_class"])
    rows += [
        (f"macro precision{over}", f"{metrics['macro_precision']:.4f}"),
        (f"macro recall{over}", f"{metrics['macro_recall']:.4f}"),
        (f"macro F1{over}", f"{metrics['macro_f1']:.4f}"),
        ("examples", part_of_split(metrics) or str(metrics["num_examples"])),
    ]
    if "evaluation" in metrics:
        rows.append(("misclassified", str(metrics["evaluation"].get("num_misclassified", ""))))
    head = '<thead><tr><th scope="col">metric</th><th scope="col">value</th></tr></thead>'
    body = "".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td class="metric">{html.escape(v)}</td></tr>' for k, v in rows
    )
    table = f'<table id="metrics"><caption>Overall metrics</caption>{head}<tbody>{body}</tbody></table>'
    return _scrolling("Metrics", table)


def _part_of_split_note(metrics: dict) -> str:
    """For an evaluation of part of its split: that its numbers are not the split's (empty for a whole split)."""
    part = part_of_split(metrics)
    if part is None:
        return ""
    split = html.escape(str(metrics.get("split") or "?"))
    return (
        f'<p id="part-of-split"><strong>Part of the split:</strong> these results score {html.escape(part)} of the '
        f"{split} split (--max_eval_samples), not the whole split: its accuracy may differ. Evaluate without "
        "--max_eval_samples for the split's own numbers.</p>\n"
    )


def _scrolling(label: str, table: str) -> str:
    """A wide table scrolls inside its own box (focusable, so the keyboard can scroll it), not the whole page."""
    return f'<div class="scroll" tabindex="0" role="region" aria-label="{html.escape(label)}">{table}</div>'


def _per_class_table(metrics: dict) -> str:
    columns = ("class", "precision", "recall (accuracy)", "F1", "support")
    head = "<thead><tr>" + "".join(f'<th scope="col">{c}</th>' for c in columns) + "</tr></thead>"

    def cell(row, key):  # 0/0: why there is no score (never predicted, no images), not a 0 read as "always wrong"
        return f"<td>{html.escape(class_score(row, key, '{:.4f}'.format))}</td>"

    body = "".join(
        f'<tr><th scope="row">{html.escape(name)}</th>{cell(r, "precision")}{cell(r, "recall")}{cell(r, "f1")}'
        f'<td>{r["support"]}</td></tr>'
        for name, r in metrics["per_class"].items()
    )
    note = no_score_note(metrics["per_class"])
    caption = f"<caption>Per class{f' ({html.escape(note)})' if note else ''}</caption>"
    return _scrolling("Per class", f'<table id="per-class">{caption}{head}<tbody>{body}</tbody></table>')


def _confusion_table(metrics: dict, names: list) -> str:
    """The confusion matrix's counts as text: the picture draws no numbers in small cells (over 32 classes).
    Over FULL_CONFUSION_TABLE classes, only the most frequent confusions (the full table is classes² cells)."""
    if len(names) > FULL_CONFUSION_TABLE:
        return _top_confusions_table(metrics, names)
    e = html.escape
    columns = "".join(f'<th scope="col">{e(n)}</th>' for n in names)
    head = f'<thead><tr><th scope="col">true class</th>{columns}</tr></thead>'
    body = "".join(
        f'<tr><th scope="row">{e(name)}</th>' + "".join(f"<td>{int(c)}</td>" for c in counts) + "</tr>"
        for name, counts in zip(names, metrics["confusion_matrix"])
    )
    table = (
        '<table id="confusion-table"><caption>Confusion matrix (rows: true class, columns: predicted class)'
        f"</caption>{head}<tbody>{body}</tbody></table>"
    )
    return f"<details><summary>Confusion matrix as a table</summary>{_scrolling('Confusion matrix', table)}</details>"


def _top_confusions(confusion, k: int = TOP_CONFUSIONS) -> list:
    """The k largest off-diagonal counts as (true index, predicted index, count), largest first (ties in row
    order); only counts above 0."""
    cm = np.array(confusion, dtype=np.int64)
    np.fill_diagonal(cm, 0)
    order = np.argsort(-cm.ravel(), kind="stable")[:k]
    return [(int(i), int(j), int(cm[i, j])) for i, j in zip(*np.unravel_index(order, cm.shape)) if cm[i, j] > 0]


def _top_confusions_table(metrics: dict, names: list) -> str:
    e = html.escape
    rows = _top_confusions(metrics["confusion_matrix"])
    head = "<thead><tr>" + "".join(f'<th scope="col">{c}</th>' for c in ("true class", "predicted class", "count"))
    body = "".join(
        f'<tr><th scope="row">{e(names[i])}</th><td>{e(names[j])}</td><td>{count}</td></tr>' for i, j, count in rows
    )
    caption = f"<caption>The {len(rows)} most frequent confusions (true class taken for another)</caption>"
    table = (
        _scrolling("Most frequent confusions", f'<table id="confusion-table">{caption}{head}</tr></thead><tbody>'
                   f"{body}</tbody></table>")
        if rows else "<p>No confusions: every image was classified as its true class.</p>"
    )
    where = (
        f"<p>With {len(names)} classes the full table would have {len(names) ** 2:,} cells: metrics.json holds the "
        "full matrix (confusion_matrix: rows true class, columns predicted class, in the order of labels).</p>"
    )
    return (
        f"<details><summary>Most frequent confusions as a table</summary>"
        f"{table}{where}</details>"
    )


# The confusions named in a line under the pictures, each a link that filters the mistake cards to it: the lesson's
# question "which classes does the model mix up?" answered without reading a classes x classes table.
CONFUSION_PAIRS = 5


def _confusion_pairs(metrics: dict, names: list) -> str:
    """The CONFUSION_PAIRS most frequent confusions, largest first, each linking to its cards
    (report.html#true=cat&pred=dog, which the page's filters read); "" when there are none."""
    matrix = metrics["confusion_matrix"]
    links = [
        f'<a href="#{html.escape(urlencode({"true": names[i], "pred": names[j]}))}">{html.escape(names[i])} taken for '
        f"{html.escape(names[j])}</a> ({count}, {count / sum(matrix[i]):.1%} of {html.escape(names[i])})"
        for i, j, count in _top_confusions(matrix, CONFUSION_PAIRS)
    ]
    if not links:
        return ""
    return (
        f'<p id="top-confusions">Most frequent confusions (each link shows its mistakes below): {", ".join(links)}.</p>'
    )


def _alt(name: str, alt: str, num_classes: int) -> str:
    """A summary picture's alt; the confusion matrix's says that the table below holds only the largest counts."""
    if name == "confusion_matrix.png" and num_classes > FULL_CONFUSION_TABLE:
        return alt.replace("counts in the table below", "the most frequent confusions in the table below, every "
                           "count in metrics.json")
    return alt


def _size(path: Path) -> str:
    """width/height attributes from a PNG's header (no decoding): the page does not jump as images load."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return ""
    # Not a PNG, or one cut off before the end of its size (struct.unpack needs all 8 bytes): no size, as for a
    # missing file; the browser then shows what it can of the picture.
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return ""
    width, height = struct.unpack(">II", head[16:24])
    return f' width="{width}" height="{height}"'


def _attention_key(metrics: dict) -> str:
    return ATTENTION_KEYS.get(metrics.get("evaluation", {}).get("attention_colours"), UNRECORDED_KEY)


def _attention_maps(metrics: dict) -> str:
    return ATTENTION_MAPS.get(metrics.get("evaluation", {}).get("attention_follows"), ATTENTION_MAPS["cls"])


def _attention_layout(metrics: dict) -> str:
    """How the strips draw the maps, as far as metrics.json records it (older evaluations blend them over the image)."""
    return ", one block per patch" if metrics.get("evaluation", {}).get("attention_layout") == "blocks" else ""


# The end of each note of hf_vit.analysis._attention_maps that says why no map was drawn for this model at all.
NONE_DRAWN = "; no attention maps were drawn."
BEYOND_LIMIT = "see --max_attention_maps"  # a mistake past the evaluation's limit on maps


def _no_map_reason(metrics: dict) -> str:
    """Why a card has no attention map: the limit on maps, or, when the evaluation drew none for this model (its
    config does not say which tokens its head reads, it returned no attention weights, ...), the note's reason.
    An evaluation that drew none records 0 maps and that note; one limited to 0 maps records no note."""
    evaluation = metrics.get("evaluation", {})
    note = evaluation.get("attention_note") or ""
    if evaluation.get("attention_maps") != 0 or not note:
        return BEYOND_LIMIT
    return note.removesuffix(NONE_DRAWN).removesuffix(".")


def _card(row: dict, folder: Path, split: str, key: str, maps: str, layout: str = "",
          no_map: str = BEYOND_LIMIT) -> str:
    e = html.escape
    index, true, pred = e(row["index"]), e(row["true_label"]), e(row["predicted_label"])
    tops = ", ".join(
        f"{e(row[f'top{k}_label'])} {e(percent(row[f'top{k}_probability']))}"
        for k in (1, 2, 3)
        if row.get(f"top{k}_label")
    )
    attention = (
        f'<img class="att" loading="lazy" src="{e(row["attention"])}"{_size(folder / row["attention"])} '
        f'alt="attention maps of #{index}: the image, {e(maps)}, side by side{layout}; {e(key)}">'
        if row.get("attention")
        else f'<p class="muted">(no attention map: {e(no_map)})</p>'
    )
    return (
        f'<li class="card" data-true="{true}" data-pred="{pred}" '
        f'data-confidence="{e(row["confidence"])}" data-index="{index}">'
        f'<h3>#{index}: {true}, predicted <span class="wrong">{pred}</span> '
        f'({e(percent(row["confidence"]))})</h3>'
        f'<div class="card-body"><img class="thumb" loading="lazy" src="{e(row["image"])}"'
        f'{_size(folder / row["image"])} alt="{e(split)} image #{index}, labelled {true}">'
        f"<div><p>p(true class): {e(percent(row['true_class_probability']))}</p>"
        f'<p class="muted">top 3: {tops}</p>{attention}</div></div></li>'
    )


def _cards(rows: list, folder: Path, split: str, key: str, maps: str, layout: str = "",
           no_map: str = BEYOND_LIMIT) -> str:
    """The first FIRST_CARDS cards in the list; the rest in a <template> with a button that brings them in."""
    first = "".join(_card(r, folder, split, key, maps, layout, no_map) for r in rows[:FIRST_CARDS])
    cards = f'<ul id="cards" aria-label="Misclassified images">\n{first}\n</ul>'
    if len(rows) <= FIRST_CARDS:
        return cards
    rest = "".join(_card(r, folder, split, key, maps, layout, no_map) for r in rows[FIRST_CARDS:])
    return (
        f'{cards}\n<template id="more-cards">{rest}</template>\n'
        f'<p><button type="button" id="show-more" hidden>Show {min(FIRST_CARDS, len(rows) - FIRST_CARDS)} more'
        f"</button> The page holds the first {FIRST_CARDS} cards at first (more come with the button or a filter); "
        "every mistake is in misclassified.csv.</p>"
    )


def _at(metrics: dict, key: str) -> str:
    """The Hub revision the evaluation pinned (`key`: model_revision, dataset_revision), as HTML; '' for none."""
    revision = metrics.get(key)
    return f" at revision <b>{html.escape(revision)}</b>" if isinstance(revision, str) else ""


def write_report(output_dir, title: str | None = None, metrics: dict | None = None) -> Path:
    """Write `<output_dir>/report.html` from the evaluation files there; returns its path.

    `metrics`: the evaluation's metrics when they are not (yet) in metrics.json: the evaluation writes the
    report first and metrics.json last, so that metrics.json marks a folder whose every file is whole.
    """
    output_dir = Path(output_dir)
    metrics_path, csv_path = output_dir / "metrics.json", output_dir / "misclassified.csv"
    for path in (csv_path,) if metrics is not None else (metrics_path, csv_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: write_report reads an evaluation folder. Run scripts/evaluate_model.py first."
            )
    if metrics is None:
        metrics = json.loads(metrics_path.read_text())
    metrics = {**metrics, "per_class": per_class_scores(metrics)}  # an older folder's 0.0 for 0/0: "no images", ...
    with open(csv_path, newline="", encoding="utf-8") as f:
        # the class names as they are, without the quote that keeps a spreadsheet from running them
        rows = [{k: csv_value(v) for k, v in row.items()} for row in csv.DictReader(f)]
    # stable: rows whose six decimals tie keep the CSV's order, the evaluation's exact ranking (its gallery and
    # attention maps follow it too); a CSV edited by hand is still shown most confident first
    rows.sort(key=lambda r: -float(r["confidence"]))
    names = list(metrics.get("labels") or metrics["per_class"])
    e = html.escape
    title = title or f"Evaluation of {metrics.get('model', 'a model')}"

    figures = "".join(
        f'<figure><img id="{name.removesuffix(".png").replace("_", "-")}" src="{_data_uri(output_dir / name)}"'
        f'{_size(output_dir / name)} alt="{e(_alt(name, alt, len(names)))}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for name, caption, alt in SUMMARY_PICTURES
        if (output_dir / name).is_file()
    )
    if metrics.get("confusion_matrix") is not None:
        figures += _confusion_pairs(metrics, names) + _confusion_table(metrics, names)
    options = '<option value="">(any)</option>' + "".join(f'<option value="{e(n)}">{e(n)}</option>' for n in names)
    note = metrics.get("evaluation", {}).get("attention_note")
    key, maps, no_map = _attention_key(metrics), _attention_maps(metrics), _no_map_reason(metrics)
    # where the model looked, or, for a model whose maps were all skipped, that the note below says why
    none = NO_MISTAKES_IN_SAMPLE if part_of_split(metrics) else NO_MISTAKES  # a sample's are not the split's
    if no_map != BEYOND_LIMIT:
        looked = "(no attention maps: see below)"
    elif rows and not any(r.get("attention") for r in rows):  # --max_attention_maps 0: no card has a map
        looked = f"(no attention maps: {BEYOND_LIMIT})"
    else:
        looked = f"and where it looked ({e(maps)}; {e(key)})"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title><style>{STYLE}</style></head>
<body><main>
<h1>{e(title)}</h1>
<p class="meta">dataset <b>{e(str(metrics.get("dataset", "?")))}</b>{_at(metrics, "dataset_revision")}, split <b>{e(str(metrics.get("split", "?")))}</b>,
model <b>{e(str(metrics.get("model", "?")))}</b>{_at(metrics, "model_revision")}</p>
{_part_of_split_note(metrics)}<h2>Metrics</h2>
{_metrics_table(metrics)}
<h2>Per class</h2>
{_per_class_table(metrics)}
<h2>Pictures</h2>
{figures}
<h2>Misclassified images</h2>
<p>Each card: the image, what it is, what the model said and how sure it was, {looked}.</p>
{f'<p class="muted">{e(note)}</p>' if note else ""}
<div id="mistakes"><!-- the filters and the cards: where a filter link scrolls to -->
<div class="filters">
<label>true class <select id="filter-true">{options}</select></label>
<label>predicted class <select id="filter-pred">{options}</select></label>
<span role="status" aria-live="polite" aria-atomic="true">showing
<span id="shown-count">{min(len(rows), FIRST_CARDS)} of {len(rows)}</span> mistakes, most confident first.<b
id="no-match"{" hidden" if rows else ""}> {NO_MATCH if rows else none}</b><b id="unknown-class" hidden></b></span>
</div>
{_cards(rows, output_dir, str(metrics.get("split") or "test"), key, maps, _attention_layout(metrics), no_map)}
</div>
</main>
<script>{SCRIPT}</script>
</body></html>
"""
    return replace_text(output_dir / "report.html", page)  # whole or absent
