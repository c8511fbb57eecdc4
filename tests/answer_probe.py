"""Measure the Try view in a real browser: a click on Classify (or Stop) -> the answer on screen.

An init script notes, on the page's clock, the click (its event's time stamp), each change of the headline's label and,
one animation frame later, its paint; and the last change inside each figure (probabilities, signal, steering,
verbalizer) until the page has been quiet for a while. Resource timings give the upload and queue requests.
"""
from __future__ import annotations

PROBE_JS = r"""
(() => {
  const T = window.__try = {clicks: [], labels: [], figs: {}, last: null};
  document.addEventListener('click', (e) => {
    if (e.target.closest && e.target.closest('#try-run, .stop-button, [id^=try-example]')) T.clicks.push(e.timeStamp);
  }, true);
  const scan = (muts) => {
    const t = performance.now();
    const el = document.querySelector('#try-headline .headline-label, #try-headline .headline-empty');
    const txt = el ? el.textContent + '|' + (document.querySelector('#try-headline .headline-conf')?.textContent || '') : null;
    if (txt !== T.last) {
      T.last = txt; const d = {t, txt}; T.labels.push(d);
      requestAnimationFrame(() => { d.paint = performance.now(); });
    }
    for (const m of muts) {
      const fig = m.target.closest && m.target.closest('#try-probs, #try-signal, #try-steering, #try-verbalizer, .unit-strip');
      if (fig) T.figs[fig.id || 'strip'] = t;
    }
  };
  new MutationObserver(scan).observe(document, {childList: true, subtree: true, characterData: true, attributes: true});
})();
"""


def answer_times(page, click, expect_change: bool = True, settle_ms: int = 1500, timeout_ms: int = 30_000) -> dict:
    """Run ``click()`` (which clicks Classify, Stop or an example), wait for a new headline and for the figures to
    settle; returns ms from the click to: the label in the DOM, painted, and the last figure change."""
    n_labels = page.evaluate("window.__try.labels.length")
    n_clicks = page.evaluate("window.__try.clicks.length")
    page.evaluate("window.__try.figs = {}")
    click()
    page.wait_for_function(f"window.__try.labels.slice({n_labels}).some(d => d.txt && d.txt.indexOf('%') >= 0"
                           f" && d.paint)", timeout=timeout_ms)
    page.wait_for_timeout(settle_ms)
    data = page.evaluate(f"({{c: window.__try.clicks[{n_clicks}], l: window.__try.labels.slice({n_labels}), "
                         "f: window.__try.figs})")
    c = data["c"]
    lab = next(d for d in data["l"] if d["txt"] and "%" in d["txt"])
    figs = {k: v - c for k, v in data["f"].items()}
    return {"label_ms": lab["t"] - c, "paint_ms": lab["paint"] - c, "figures_ms": max(figs.values(), default=None),
            "figs": figs, "text": lab["txt"]}
