"""Selection with proxies (select_by_proxy): scoring with a trained cell, the bands, the scorer in the
cache keys and run ids, one-line errors, and a selected recipe trained end to end."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from helpers import FAST, run_main
from proxyscale import config as C
from proxyscale import record
from proxyscale.data import cache, curation, identity, select
from proxyscale.data.sources import Document
from proxyscale.job import run_cell

REPEATED = "The function returns the value of its argument. "


def _cfg(out_dir, cache_dir, *extra):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["model=debug", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", *FAST, *extra])


@pytest.fixture(scope="session")
def outputs(tmp_path_factory, cache_dir) -> Path:
    """An output folder whose sweep `scorers` holds one completed debug cell with its checkpoint kept."""
    out = tmp_path_factory.mktemp("select_outputs")
    rec = run_cell(_cfg(out, cache_dir, "data=balanced", "sweep=scorers", "trainer.keep_checkpoints=true"))
    assert rec.status == "completed"
    return out


@pytest.fixture(scope="session")
def scorer(outputs) -> Path:
    (cell,) = [p.parent for p in (outputs / "scorers").glob("*/result.json")]  # (the sweep also holds eval_snippets/)
    return cell


def _docs() -> list[Document]:
    rng = random.Random(0)
    rep = [Document(f"rep{i}", REPEATED * (6 + i)) for i in range(3)]
    rnd = [Document(f"rnd{i}", "".join(chr(rng.randint(33, 126)) for _ in range(400))) for i in range(3)]
    return rep + rnd


@pytest.mark.slow  # the scorer fixture trains a debug cell in-process
def test_repeated_text_scores_lower_than_random_characters_and_the_bands_keep_their_side(scorer):
    docs = _docs()
    cell, rec = select.resolve(str(scorer))
    losses = select.score_documents(docs, cell, rec, max_tokens_per_doc=256)
    assert max(losses[:3]) < min(losses[3:])
    kept = {b: [d.id for d in select.select_by_proxy(docs, random.Random(0), proxy=str(scorer), keep_frac=0.5, band=b)] for b in select.BANDS}
    assert kept["low"] == ["rep0", "rep1", "rep2"] and kept["high"] == ["rnd0", "rnd1", "rnd2"]
    assert len(kept["middle"]) == 3 and set(kept["middle"]) not in ({"rep0", "rep1", "rep2"}, {"rnd0", "rnd1", "rnd2"})
    # by size in a sweep folder: the same cell
    assert [d.id for d in select.select_by_proxy(docs, None, proxy=str(scorer.parent), proxy_size="debug", keep_frac=0.5)] == kept["low"]


def test_keep_band_keeps_round_keep_frac_of_the_ranked_documents_in_input_order():
    docs = [Document(f"d{i}", "x") for i in range(10)]
    losses = [9, 0, 8, 1, 7, 2, 6, 3, 5, 4]  # d1 lowest ... d0 highest
    ids = lambda band, frac: [d.id for d in select.keep_band(docs, losses, frac, band)]  # noqa: E731
    assert ids("low", 0.3) == ["d1", "d3", "d5"]
    assert ids("high", 0.3) == ["d0", "d2", "d4"]
    assert ids("middle", 0.6) == ["d4", "d5", "d6", "d7", "d8", "d9"]  # ranks 2..7: the two lowest and the two highest dropped
    assert len(ids("low", 0.01)) == 1 and len(ids("middle", 1.0)) == 10


def _recipe(out_dir, cache_dir, proxy: Path):
    return _cfg(out_dir, cache_dir, "data=selected_by_proxy_debug", f"data.steps.2.proxy={proxy}", "data.steps.2.proxy_size=debug")


@pytest.mark.slow  # the scorer fixture trains a debug cell in-process
def test_the_scorers_checkpoint_is_in_the_step_key_the_recipe_key_and_the_run_id(scorer, tmp_path, cache_dir):
    import torch

    copy = tmp_path / "scorers" / scorer.name
    shutil.copytree(scorer, copy)
    cfg = _recipe(tmp_path, cache_dir, copy)

    def keys():
        steps = curation.doc_steps(cfg.data, "prose")
        return cache._key({"steps": steps}), cache._key(cache._recipe_payload(cfg.data)), identity.run_id(cfg)

    before = keys()
    assert curation.doc_steps(cfg.data, "prose")[-1]["inputs"]["scorer_run_id"] == scorer.name
    assert keys() == before  # stable while the checkpoint is
    ckpt = copy / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    name = next(k for k in state["state_dict"] if k.startswith("net."))
    state["state_dict"][name] = state["state_dict"][name] + 0.01  # the scorer retrained: same run id, other weights
    torch.save(state, ckpt)
    after = keys()
    assert all(a != b for a, b in zip(before, after))
    # recipes without the step keep their keys and run ids: no step_inputs in their environment
    assert "step_inputs" not in identity.environment(C.plain(_cfg(tmp_path, cache_dir, "data=balanced")))


@pytest.mark.slow  # the scorer fixture trains a debug cell in-process
@pytest.mark.parametrize("case", ["missing", "not_kept", "bad_band"])
def test_bad_scorers_and_params_fail_in_one_line_before_anything_runs(case, scorer, tmp_path, capsys):
    proxy = tmp_path / "scorers" / scorer.name
    args = {"missing": [], "not_kept": [], "bad_band": ["data.steps.2.band=top"]}[case]
    if case != "missing":
        shutil.copytree(scorer, proxy, ignore=shutil.ignore_patterns("checkpoints") if case == "not_kept" else None)
    out = tmp_path / "out"
    r = run_main(capsys, "model=debug", "data=selected_by_proxy_debug", f"data.steps.2.proxy={proxy}", f"paths.output_dir={out}", *args)
    expected = {"missing": f"proxy cell {proxy} does not exist", "not_kept": "kept no checkpoint", "bad_band": "band must be low, high or middle, got 'top'"}[
        case
    ]
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("proxyscale: error: recipe selected_by_proxy_debug: step 2 select_by_proxy: ") and expected in lines[0]
    if case == "not_kept":
        assert "trainer.keep_checkpoints=true" in lines[0]
    assert not out.exists()


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_a_recipe_selected_by_a_proxy_trains_end_to_end(outputs, cache_dir):
    cfg = _cfg(outputs, cache_dir, "data=selected_by_proxy_debug", "sweep=selected")  # finds the debug scorer in <outputs>/scorers
    from proxyscale.grid import check_cell

    check_cell(cfg)
    rec = run_cell(cfg)
    assert rec.status == "completed", rec.error
    env = record.read(outputs / "selected" / rec.run_id).extra["identity_env"]
    assert env["step_inputs"][0]["op"] == "select_by_proxy" and env["step_inputs"][0]["scorer_run_id"].startswith("debug-balanced-")
    meta = cache.cached_recipe_meta(cfg.data, str(cache_dir))
    sel = [s for s in meta["steps"] if s["op"] == "select_by_proxy"]
    assert {s["source"] for s in sel} == {"prose", "readme"} and all(s["docs_out"] == round(s["docs_in"] / 2) for s in sel)
