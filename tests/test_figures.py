"""The report's figures (issue 17.3): every figure is a file beside report.md (fig_<name>.png/.svg), linked
from report.md and embedded in report.html; legible at 100% (text >= 9 pt, nothing outside the figure);
panels with nothing to show are skipped with a note; the page renders in headless Chromium.

Reports are built in-process from the synthetic sweep of test_report.py (and a 2-recipe CSV) with few
bootstrap replicates, once per module."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import synthetic_sweep

from helpers import CHROMIUM, screenshot
from proxyscale.report import build, render


def _report(folder: Path, **kw) -> dict:
    paths, rep = build.run(n_boot=100, **kw)
    assert all(p.exists() for p in paths)
    return json.loads((folder / "report.json").read_text())


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("figs") / "syn"
    synthetic_sweep(root)
    return root, _report(root, sweep_dir=str(root))


@pytest.fixture(scope="module")
def two_recipes(tmp_path_factory) -> tuple[Path, dict]:
    """2 recipes x 2 sizes x 2 LRs: decision accuracy is a single pair; nothing for a heatmap or LR curves."""
    folder = tmp_path_factory.mktemp("two")
    rows = [
        {"recipe": r, "size": s, "metric": "loss", "lr": lr, "params": p, "value": 3.0 - 0.1 * i - 0.2 * j + 0.01 * k}
        for i, r in enumerate(("a", "b"))
        for j, (s, p) in enumerate((("S", 1e6), ("L", 1e8)))
        for k, lr in enumerate((1e-3, 3e-3))
    ]
    pd.DataFrame(rows).to_csv(folder / "two.csv", index=False)
    return folder, _report(folder / "rep", csv=str(folder / "two.csv"), out=str(folder / "rep"), allow_short_runs=True)


@pytest.fixture(scope="module")
def syn_figures(syn):
    """render.figures of the synthetic report, built once for the tests that inspect the Figure objects."""
    import matplotlib.pyplot as plt

    figs = render.figures(syn[1])
    yield figs
    for f in figs.values():
        if not isinstance(f, str):
            plt.close(f)


def md_links(md: str) -> list[str]:
    return re.findall(r"\]\(([^)]+\.(?:png|svg))\)", md)


def html_links(page: str) -> list[str]:
    return re.findall(r"(?:src|href)='((?!data:)[^']+\.(?:png|svg))'", page)


def test_every_figure_is_a_file_linked_from_report_md(syn):
    root, rep = syn
    md = (root / "report.md").read_text()
    links = md_links(md)
    # the synthetic sweep stores no per-example losses (test_examples covers that figure)
    expected = {f"fig_{k}.{ext}" for k, _, _ in render.ALL_FIGURES if k != "per_example" for ext in ("png", "svg")}
    assert set(links) == expected, set(links) ^ expected
    for name in links:
        data = (root / name).read_bytes()
        assert len(data) > 1000, name
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if name.endswith(".png") else b"<svg" in data[:2000]
    assert set(html_links((root / "report.html").read_text())) == expected
    import matplotlib.image as mpimg

    for name in (n for n in links if n.endswith(".png")):
        img = mpimg.imread(str(root / name))
        assert img.shape[0] > 200 and img.shape[1] > 300, name


def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def drawn_texts(fig, monkeypatch) -> list:
    """The text artists a draw of `fig` actually renders (tick labels outside the view are Text objects too, never drawn)."""
    from matplotlib.text import Text

    seen, original = [], Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            seen.append(self)
        return original(self, renderer)

    with monkeypatch.context() as m:
        m.setattr(Text, "draw", draw)
        fig.canvas.draw()
    return seen


def per_example_report() -> dict:
    """The per-example section of a 3-size report (the synthetic sweep stores no per-example losses)."""
    entries = [
        {"metric": m, "proxy": p, "target": "mini", "mean": mean, "mean_ci": [mean - 0.1, mean + 0.08], "proxy_params": n}
        for m in ("code", "prose", "readme")
        for p, n, mean in (("debug", 4e4, 0.55), ("tiny", 3e5, 0.72))
    ]
    return {"sizes": ["debug", "tiny", "mini"], "per_example": {"available": True, "target": "mini", "entries": entries}}


def test_figures_are_legible_text_9pt_or_more_and_nothing_clipped(syn_figures, monkeypatch):
    figs = {**syn_figures, "per_example": render.fig_per_example(per_example_report())}
    drawn = {k: f for k, f in figs.items() if not isinstance(f, str)}
    assert set(drawn) == {k for k, _, _ in render.ALL_FIGURES}, {k: f for k, f in figs.items() if isinstance(f, str)}
    assert render.DPI >= 100
    for key, fig in drawn.items():
        texts = drawn_texts(fig, monkeypatch)  # in the layout the PNG gets
        r = fig.canvas.get_renderer()
        box = fig.bbox
        assert texts, key
        assert all(t.get_fontsize() >= 9 for t in _texts(fig)), key  # also the ones not drawn this time
        for t in texts:
            assert t.get_fontsize() >= 9, (key, t.get_text(), t.get_fontsize())
            bb = t.get_window_extent(r)
            assert box.x0 - 1 <= bb.x0 and bb.x1 <= box.x1 + 1 and box.y0 - 1 <= bb.y0 and bb.y1 <= box.y1 + 1, (key, t.get_text(), bb.bounds, box.bounds)


def test_figures_follow_the_data(syn, syn_figures):
    """Colour-blind-safe colours, the LR axis ticked at the grid's LRs with the standard LR inside it, chance lines."""
    _, rep = syn
    import matplotlib.colors as mcolors

    figs = syn_figures
    lr = figs["reduced_lr"]
    ax = lr.axes[0]
    lrs = sorted({p["proxy_lr"] for e in rep["reduced_lr"]["entries"] for p in e["curve"]})
    assert list(ax.get_xticks()) == pytest.approx(lrs)
    lo, hi = ax.get_xlim()
    assert lo < rep["reduced_lr"]["standard_lr"] < hi
    texts = [t.get_text() for t in _texts(lr)]
    assert any(t.startswith("standard LR") for t in texts) and any("chance" in t for t in texts)
    palette = {mcolors.to_hex(c) for c in render.PALETTE}
    lines = [ln for f in (figs["bump"], figs["scaling"]) for a in f.axes for ln in a.get_lines() if len(ln.get_xdata()) > 1]
    assert lines and {mcolors.to_hex(ln.get_color()) for ln in lines} <= palette
    heat = figs["heatmap"].axes[0].images[0]
    assert heat.get_cmap().name == "cividis"
    scaling = figs["scaling"].axes[0]
    assert scaling.get_xscale() == "log"
    assert len(scaling.containers) == len(rep["recipes"])  # one errorbar line per recipe


def test_panels_with_nothing_to_show_are_skipped_with_a_note(two_recipes):
    folder, rep = two_recipes
    figs = render.figures(rep)
    import matplotlib.pyplot as plt

    for f in figs.values():
        if not isinstance(f, str):
            plt.close(f)
    assert isinstance(figs["heatmap"], str) and isinstance(figs["reduced_lr"], str)
    md = (folder / "rep" / "report.md").read_text()
    page = (folder / "rep" / "report.html").read_text()
    for key in ("heatmap", "reduced_lr"):
        assert not (folder / "rep" / f"fig_{key}.png").exists()
        assert f"_Not drawn: {figs[key]}._" in md
        assert "Not drawn: " in page
    for name in md_links(md) + html_links(page):
        assert (folder / "rep" / name).stat().st_size > 0


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium (tests/system-deps.sh installs it)")
def test_report_html_in_headless_chromium_shows_every_figure(syn, tmp_path):
    root, _ = syn
    page = root / "report.html"
    text = page.read_text()
    for name in html_links(text) + md_links((root / "report.md").read_text()):
        assert (root / name).is_file() and (root / name).stat().st_size > 0, name
    assert text.count("data:image/png;base64,") == len(render.ALL_FIGURES) - 1  # all but the per-example figure (no such losses here)
    shot = tmp_path / "shot.png"
    proc = screenshot(page, shot, tmp_path / "profile", "1280,4000", "--force-device-scale-factor=1")
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))
    assert img.shape[:2] == (4000, 1280)  # 100%: one CSS pixel per screen pixel
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert len(np.unique(rgb[::7], axis=0)) > 200, "screenshot looks blank"
    assert (rgb < 128).all(axis=1).mean() > 0.005
