"""report.html: one self-contained page per run, rendered by a real headless Chromium (issue 16)."""

import html
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from model import report_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected into a copy of the page (the page itself has no script): once the
# page has loaded, it writes what the browser made of every image into the DOM.
PROBE = (
    "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-images',"
    "JSON.stringify([...document.images].map(i=>({alt:i.alt,ok:i.complete&&i.naturalWidth>0,w:i.naturalWidth}))));});</script>"
)


def chromium_dump(page: Path) -> str:
    """The DOM after load, from headless Chromium (flags as the machine's notes give: no network, no first run)."""
    assert CHROMIUM, "chromium is not installed (.ci/run installs it)"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_trained_runs_page_renders_with_every_image(cnn_run, tmp_path):
    page = Path(cnn_run["out"]) / report_page.PAGE
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "src='data:image/png;base64," in text  # self-contained
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = chromium_dump(probe)
    attr = dom.split('data-images="', 1)[1].split('"', 1)[0]
    images = json.loads(html.unescape(attr))
    assert sorted(i["alt"] for i in images) == sorted(name for name, _ in report_page.FIGURES)
    assert all(i["ok"] and i["w"] > 100 for i in images), images
    metrics = json.loads((Path(cnn_run["out"]) / "metrics.json").read_text())
    assert f"{metrics['val_accuracy']:.4f}" in dom and "Arguments" in dom and "History" in dom


def test_duration_and_cost_when_known_and_missing_figures_left_out(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps({"loss": [0.9, 0.5], "val_loss": [1.0]}))
    (tmp_path / "run.json").write_text(json.dumps({"config": {"epochs": 2, "net": "cnn", "lr": None}}))
    text = report_page.render(str(tmp_path), duration_s=3725, cost=0.5443, title="run <x>")
    assert "1h02m05s" in text and "$0.54" in text and "run &lt;x&gt;" in text
    assert "<img" not in text and "<th>lr</th>" not in text
    assert "<td>0.5000</td><td></td>" in text  # a shorter metric list leaves its cell empty
