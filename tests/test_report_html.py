"""report.html: the data it inlines against the tables and the generating formula, its escaping,
and (slow) the page itself in headless Chromium: no errors, no network, the slider, the hover
readout, the setting menu and the verdicts checked against summary.csv, paths.csv and report.md."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest

from linpath.analysis.curves import load_curves, metric_rows
from linpath.analysis.intervals import summary_rows
from linpath.report.html import render_html, script_json, setting_data
from linpath.runs import stages
from tests.synthetic_run import SETTINGS, STEPS, curve, make_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def test_json_in_a_script_element_cannot_close_it():
    data = {"verdict": "</script><script>alert(1)</script><!-- & -->", "n": [1.5, None]}
    text = script_json(data)
    assert "</" not in text and "<!--" not in text and "&" not in text
    assert json.loads(text) == data


def test_the_page_escapes_what_it_is_given():
    title = '<img src=x onerror="alert(1)">'
    verdict = "- </script><b>not markup</b>"
    setting = {"key": "k", "steps": [0], "verdicts": [verdict]}
    page = render_html(title, "Run `r`", [setting], ["</script>"])
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert page.count("</script>") == 2  # the data's and the script's own
    assert page_data(page) == {
        "title": title,
        "subtitle": "Run `r`",
        "settings": [setting],
        "notes": ["</script>"],
    }


def test_the_inlined_curves_and_intervals_are_the_tables(tmp_path):
    """Curves against the formula that generated the items (mean and std over replicates by
    hand); Figure 3 against summary_rows; verdicts passed through unchanged."""
    run = make_run(tmp_path)
    key = "test-interpolate-uniform21-fp32"
    curves = load_curves(run, key)
    summary = summary_rows(curves, metric_rows(curves))
    verdicts = ["- a **b** `c`"]
    data = setting_data(curves, summary, verdicts, "described", "rise_over_start")
    assert data["key"] == key and data["steps"] == list(STEPS) and data["verdicts"] == verdicts
    assert data["description"] == "described" and data["replicates"] == 2
    for i, t in enumerate(STEPS):
        shown = data["curves"][i]
        for j, x in enumerate(shown["x"]):
            losses = [curve(r, t, x)[0] for r in (0, 1)]
            assert shown["loss"][j] == pytest.approx(statistics.mean(losses), rel=1e-5)
            assert shown["loss_std"][j] == pytest.approx(statistics.stdev(losses), rel=1e-5, abs=1e-9)
    for row in summary:
        if row["metric"] == "rise_over_start":
            i = STEPS.index(row["t"])
            for stat in ("mean", "ci_low", "ci_high"):
                assert data["figure3"][row["quantity"]][stat][i] == pytest.approx(
                    row[stat], rel=1e-5, abs=1e-12
                )


# --- the page in a browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("html"))
    stages.report(run.root)
    return run


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary_value(run, key: str, t: int, quantity: str, stat: str) -> float:
    for row in read_rows(run.results_dir(key) / "summary.csv"):
        if (int(row["t"]), row["quantity"], row["metric"]) == (t, quantity, "rise_over_start"):
            return float(row[stat])
    raise AssertionError(f"no summary row for t={t} {quantity}")


def check_metrics_table(page, run, key: str, t: int) -> None:
    for q in ("loss", "error"):
        for stat in ("mean", "std", "ci_low", "ci_high"):
            shown = page.inner_text(f"#t-metrics td[data-q={q}][data-stat={stat}]")
            assert float(shown) == pytest.approx(summary_value(run, key, t, q, stat), abs=0.6e-4), (q, stat)


def check_readout(page, run, key: str) -> None:
    """Hover over the loss chart; the readout's mean ± std against paths.csv's points at that x."""
    box = page.locator("#chart-loss").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5)
    text = page.inner_text("#readout")
    found = re.fullmatch(
        r"t = (\d+), x = ([\d.]+): loss ([\d.]+) ± ([\d.]+), error ([\d.]+) ± ([\d.]+)", text
    )
    assert found, text
    t, x = int(found.group(1)), float(found.group(2))
    assert 0.3 < x < 0.7  # the point under the pointer, not an end
    rows = [
        d
        for d in read_rows(run.results_dir(key) / "paths.csv")
        if int(d["t"]) == t and abs(float(d["x"]) - x) < 0.6e-4
    ]
    assert len(rows) == 2, rows  # both replicates
    for q, mean_at, std_at in (("loss", 3, 4), ("error", 5, 6)):
        values = [float(d[q]) for d in rows]
        assert float(found.group(mean_at)) == pytest.approx(statistics.mean(values), abs=0.6e-4)
        assert float(found.group(std_at)) == pytest.approx(statistics.stdev(values), abs=0.6e-4)


def shown_verdicts(page) -> list[str]:
    return [li.inner_text() for li in page.locator("#verdicts li").all()]


def report_md_verdicts(run, key: str) -> list[str]:
    """report.md's verdict lines of one setting, with its markup (**, `) taken out."""
    section = run.report.read_text().split(f"## Sweep setting `{key}`")[1].split("### Figures")[0]
    lines = [line[2:] for line in section.splitlines() if line.startswith("- ")]
    return [line.replace("**", "").replace("`", "") for line in lines]


@pytest.mark.slow
def test_the_page_in_a_browser(browser, reported):
    run, (first, second) = reported, sorted(SETTINGS)
    page = browser.new_page(viewport={"width": 1040, "height": 1400})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    url = run.report.with_suffix(".html").resolve().as_uri()
    page.goto(url)

    options = page.locator("#setting option").all()
    assert [o.get_attribute("value") for o in options] == [first, second]
    assert page.inner_text("#t-value") == "0"
    assert shown_verdicts(page) == report_md_verdicts(run, first)

    page.focus("#slider")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#t-value") == "64"
    check_metrics_table(page, run, first, 64)
    check_readout(page, run, first)

    page.select_option("#setting", second)
    assert "21 points per path" in page.inner_text("#description")
    assert page.inner_text("#t-value") == "0"
    assert shown_verdicts(page) == report_md_verdicts(run, second)
    page.focus("#slider")
    page.keyboard.press("End")
    assert page.inner_text("#t-value") == str(STEPS[-1])
    check_metrics_table(page, run, second, STEPS[-1])
    check_readout(page, run, second)
    page.check("#same-axis")
    assert page.locator("#chart-loss polyline.other").count() == len(STEPS)

    assert problems == []
    assert requests == [url]  # nothing but the page itself: no network, no other file
    page.close()


def test_the_published_report_html_shows_the_published_tables():
    """docs/results' MNIST report.html (linked from the README) against that run's summary.csv."""
    folder = Path(__file__).resolve().parents[1] / "docs" / "results" / "mnist_lenet_300_100"
    (setting,) = page_data((folder / "report.html").read_text())["settings"]
    rows = read_rows(folder / "results" / setting["key"] / "summary.csv")
    checked = 0
    for row in rows:
        if row["metric"] == setting["metric"]:
            i = setting["steps"].index(int(row["t"]))
            for stat in ("mean", "ci_low", "ci_high"):
                assert setting["figure3"][row["quantity"]][stat][i] == pytest.approx(
                    float(row[stat]), rel=1e-5
                )
                checked += 1
    assert checked == 3 * 2 * len(setting["steps"]) == 3 * 2 * 29
