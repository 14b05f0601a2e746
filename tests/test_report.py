"""The one-page report: every artifact of the registry, from the most informative profile, in a real browser."""

import json
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cldst.analysis.paper import output_stem  # noqa: E402
from cldst.analysis.report import build_report, markdown_html  # noqa: E402
from cldst.config import Config  # noqa: E402
from cldst.experiments import ARTIFACTS  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_png(path: Path, label: str) -> None:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.text(0.5, 0.5, label, ha="center")
    fig.savefig(path)
    plt.close(fig)


def fake_run(root: Path, experiment: str, seed: int) -> None:
    cfg = Config(experiment=experiment, num_tasks=10, seed=seed)
    path = root / experiment / cfg.run_id()
    path.mkdir(parents=True)
    # metrics only: a record without masks says so (save_masks is bookkeeping, not part of the run id)
    (path / "config.json").write_text(json.dumps({**cfg.to_dict(), "save_masks": False}))
    metrics = {"run_id": cfg.run_id(), "experiment": experiment, "acc": 40.0 + seed, "bwt": 0.0, "fwt_authors": 10.0,
               "fwt_standard": 1.0, "incremental_acc": [40.0] * 10, "acc_matrix": [[40.0] * 10] * 10}
    (path / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture()
def built(tmp_path):
    """Files as the analysis writes them: the cpu profile built tables 3, figure 4, the findings and
    capacity (3 seeds); the smoke profile built figure 4 too and figure 2; nothing built the rest."""
    figures, tables, runs = tmp_path / "figures", tmp_path / "tables", tmp_path / "runs"
    figures.mkdir(), tables.mkdir()
    for profile, names in (("cpu", ["table3", "figure4", "findings", "capacity"]), ("smoke", ["figure4", "figure2"])):
        for name in names:
            a = ARTIFACTS[name]
            stem = output_stem(a.stem, profile)
            if name.startswith("figure"):
                fake_png(figures / f"{stem}.png", f"{name} {profile}")
            elif name == "capacity":
                for part in ("used_total", "overlap"):
                    fake_png(figures / f"{stem}_{part}.png", f"{name} {part}")
            else:
                (tables / f"{stem}.md").write_text(
                    f"**{name} caption**\n\n| finding | verdict |\n|:--|:--|\n| I | **holds** |\n| II | *inconclusive* |\n")
        for seed in range(3 if profile == "cpu" else 1):
            fake_run(runs / profile, f"{profile}/cifar100-10", seed)
    for seed in range(2):  # the findings read these too
        fake_run(runs / "cpu", "cpu/adaptive", seed)
    page = build_report(figures=figures, tables=tables, runs_root=runs)
    return page


def test_the_page_names_every_artifact_and_which_profile_made_it(built):
    text = built.read_text()
    for name in ARTIFACTS:
        assert f'id="a-{name}"' in text, name
    assert 'data-artifact="figure4" data-profile="cpu"' in text  # cpu is preferred to smoke
    assert 'data-artifact="figure2" data-profile="smoke"' in text
    assert "made by the <b>cpu</b> profile from <b>3</b> runs of experiment <code>cifar100-10</code> (3 seeds)" in text
    # the findings count the runs of every experiment they read that has runs: adaptive's 2 and the 3 main ones
    assert ("made by the <b>cpu</b> profile from <b>5</b> runs of experiments <code>adaptive</code>, "
            "<code>cifar100-10</code> (3 seeds)") in text
    assert "also built by: <a" in text  # figure 4's smoke version is linked
    assert text.index('id="a-findings"') < text.index('id="a-table1"')  # the findings lead
    assert text.count('class="missing">Not built') == len(ARTIFACTS) - 5
    assert "<td><b>holds</b></td>" in text


def test_markdown_tables_become_html():
    out = markdown_html("**cap**\n\n| a | b |\n|--|--|\n| 1 | x < y |\n\n- one\n- two")
    assert out == ("<p><b>cap</b></p>\n<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody>"
                   "<tr><td>1</td><td>x &lt; y</td></tr></tbody></table>\n<ul><li>one</li>\n<li>two</li></ul>")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_the_page_renders_in_a_real_browser(built, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(built.as_uri())
        assert page.title() == "cldst: figures, tables and findings"
        assert page.locator("section").count() == len(ARTIFACTS)
        images = page.locator("img")
        assert images.count() == 4  # figure 4 (cpu), figure 2 (smoke), the two capacity parts
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        assert all(w > 0 for w in widths), widths  # every image loaded
        assert page.locator("#a-findings table td b").first.inner_text() == "holds"
        shot = Path(os.environ.get("CLDST_REPORT_SCREENSHOT", tmp_path / "report.png"))
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == [] and shot.stat().st_size > 10_000
