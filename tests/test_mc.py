"""Benchmark task eval sets (issue 16.4): multiple-choice and cloze items scored per item with acc, prob_correct
and ll_norm; the math on hand-computable cases, bad items in one line, a real sweep through records, the
collector and the report with the metrics' direction (higher is better)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from helpers import FAST, ROOT, run_main
from proxyscale import collect, record
from proxyscale.config import ConfigError, SourceConfig, identity_of, source_identity
from proxyscale.data import sources, tasks
from proxyscale.job.module import continuation_scores

# ---------------------------------------------------------------------------------------------
# (a) the scoring math


def test_mc_and_cloze_metrics_on_a_hand_computed_case():
    # item 0: choices' summed ll -2 (2 tokens), -3 (1 token): per-token -1, -3 -> choice 0, the label
    # item 1: -1 (1), -4 (4), -2 (1): per-token -1, -1, -2 -> a tie, the first (0) wins; the label is 1
    item, choice = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2])
    ll, n = np.array([-2.0, -3.0, -1.0, -4.0, -2.0]), np.array([2, 1, 1, 4, 1])
    out = tasks.score_items("mc", ll, n, np.zeros(5, bool), item, choice, np.array([0, 1]), np.array([2, 3]))
    assert out["acc"].tolist() == [1.0, 0.0]
    e = math.exp
    assert out["prob_correct"] == pytest.approx([e(-2) / (e(-2) + e(-3)), e(-4) / (e(-1) + e(-4) + e(-2))], rel=1e-12)
    assert out["ll_norm"] == pytest.approx([-1.0, -1.0])
    agg = tasks.aggregate(out)
    assert agg["acc"] == 0.5 and agg["ll_norm"] == -1.0
    # cloze: one target; acc is greedy reproduction, prob_correct the target's probability exp(ll)
    c = tasks.score_items(
        "cloze", np.array([-1.5, -0.2]), np.array([3, 1]), np.array([True, False]), np.array([0, 1]), np.array([0, 0]), np.array([0, 0]), np.array([1, 1])
    )
    assert c["acc"].tolist() == [1.0, 0.0] and c["prob_correct"] == pytest.approx([e(-1.5), e(-0.2)]) and c["ll_norm"] == pytest.approx([-0.5, -0.2])
    # an item with a choice not scored (another process's share) is NaN, and left out of the mean
    part = tasks.score_items("mc", ll[:4], n[:4], np.zeros(4, bool), item[:4], choice[:4], np.array([0, 1]), np.array([2, 3]))
    assert np.isnan(part["acc"][1]) and tasks.aggregate(part)["acc"] == 1.0


def test_acc_is_the_harness_raw_loglikelihood_acc_norm_per_character_and_the_per_token_variant_named_apart():
    # item 0 (label 0): A ll -6 over 6 tokens / 6 chars, B ll -4 over 2 tokens / 2 chars: raw picks B, per token and per char A
    # item 1 (label 0): A ll -6 over 2 tokens / 60 chars, B ll -4 over 2 tokens / 4 chars: raw and per token B, per char A
    item, choice = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    ll, n, chars = np.array([-6.0, -4.0, -6.0, -4.0]), np.array([6, 2, 2, 2]), np.array([6, 2, 60, 4])
    out = tasks.score_items("mc", ll, n, np.zeros(4, bool), item, choice, np.array([0, 0]), np.array([2, 2]), chars)
    assert out["acc"].tolist() == [0.0, 0.0]
    assert out["acc_per_token"].tolist() == [1.0, 0.0]
    assert out["acc_norm"].tolist() == [1.0, 1.0]
    tt = tasks.tokenize([tasks.Item("ctx", ("ab", "cdef"), 1)], "mc", lambda t: np.frombuffer(t.encode(), np.uint8), 0, 16)
    assert tt.chars.tolist() == [2, 4]  # the choice text, not the delimiter


def test_hellaswag_items_are_built_and_cleaned_as_the_harness_does():
    row = {
        "activity_label": "Home [title] repair",
        "ctx_a": "A man holds a hammer.",
        "ctx_b": "he  [step] hits the nail",
        "endings": ["and it goes in [title] Done.", " it bends. "],
        "label": "1",
    }
    spec = SourceConfig(name="hs", kind="files", task="mc", context_field="ctx", choices_field="endings", label_field="label", preprocess="hellaswag")
    it = tasks.item_from_row(row, spec, "hs item 1")
    # "He  [step] hits": the tag leaves three spaces and one pass of replace("  ", " ") leaves two, as in the harness
    assert it.context == "Home. repair: A man holds a hammer. He  hits the nail"
    assert it.choices == ("and it goes in. Done.", "it bends.") and it.label == 1
    with pytest.raises(ConfigError, match="preprocess must be hellaswag"):
        sources.check_source(SourceConfig(name="x", kind="builtin", path="python_docs", preprocess="hellaswag"))


def test_continuation_scores_of_a_fixed_model():
    # logits = log p, so log-softmax gives back log p; the continuation is targets[1:3]
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]])
    targets = torch.tensor([[0, 2, 1, 0]])
    ll, greedy = continuation_scores(p.log(), targets, torch.tensor([1]), torch.tensor([2]))
    assert float(ll[0]) == pytest.approx(math.log(0.5 * 0.3), rel=1e-6)
    assert not bool(greedy[0])  # position 2 predicts 0, the target is 1
    ll, greedy = continuation_scores(p.log(), targets, torch.tensor([1]), torch.tensor([1]))
    assert float(ll[0]) == pytest.approx(math.log(0.5), rel=1e-6) and bool(greedy[0])


def test_tokenize_cuts_the_context_from_the_left():
    enc = lambda s: np.frombuffer(s.encode(), dtype=np.uint8).astype(np.int64)  # noqa: E731
    items = [tasks.Item("abcdefgh", ("xy", "z"), 1)]
    tt = tasks.tokenize(items, "mc", enc, 256, seq_len=6, delimiter=" ")
    assert tt.seqs[0].tolist() == enc("efgh xy").tolist()  # 7 = seq_len + 1 tokens: EOS and 'abcd' cut
    assert (tt.start[0], tt.length[0]) == (3, 3)  # targets = seq[1:]: ' xy' at 3..5
    assert tt.seqs[1].tolist() == enc("defgh z").tolist() and (tt.start[1], tt.length[1]) == (4, 2)
    short = tasks.tokenize([tasks.Item("ab", ("c",), 0)], "cloze", enc, 256, seq_len=6)
    assert short.seqs[0].tolist() == [256, *enc("ab c").tolist()] and short.start[0] == 2


def _spec(**kw):
    return OmegaConf.structured(SourceConfig(name="t", kind="files", path="x.jsonl", **kw))


def test_field_maps_of_the_hub_shapes():
    hs = _spec(task="mc", context_field="ctx", choices_field="endings", label_field="label")
    assert tasks.item_from_row({"ctx": "A man ", "endings": ["a", "b", "c", "d"], "label": "2"}, hs, "r") == tasks.Item("A man", ("a", "b", "c", "d"), 2)
    sq = _spec(task="cloze", context_template="{context}\nQ: {question}\nA:", target_field="answers.text.0")
    it = tasks.item_from_row({"context": "P.", "question": "Who?", "answers": {"text": ["Ann", "Ann B"]}}, sq, "r")
    assert it == tasks.Item("P.\nQ: Who?\nA:", ("Ann",), 0)
    lam = _spec(task="cloze", context_field="text", cloze_last_word=True)
    assert tasks.item_from_row({"text": "she opened the door"}, lam, "r") == tasks.Item("she opened the", ("door",), 0)


def test_task_keys_at_their_defaults_leave_run_ids_alone():
    src = OmegaConf.to_container(OmegaConf.structured(SourceConfig(name="prose", path="python_docs")))
    assert "task" not in source_identity(src) and source_identity({**src, "task": "mc"})["task"] == "mc"
    cfg = {"model": {"name": "m"}, "data": {"name": "d", "sources": [src]}, "eval": {"sets": [src]}, "optim": {"lr": 1.0}, "seed": 0}
    assert "task" not in json.dumps(identity_of(cfg))


def test_the_shipped_task_sets_load_offline():
    mc = sources.load_items(OmegaConf.structured(SourceConfig(name="q", kind="files", path="eval/data/tasks_mc.jsonl", task="mc")))
    cl = sources.load_items(OmegaConf.structured(SourceConfig(name="c", kind="files", path="eval/data/tasks_cloze.jsonl", task="cloze")))
    assert len(mc) == 24 and len(cl) == 24 and all(len(i.choices) == 4 for i in mc) and all(len(i.choices) == 1 for i in cl)


def test_unreachable_hub_task_set_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    conf = OmegaConf.load(ROOT / "conf" / "eval" / "hub_tasks.yaml")
    hs = next(s for s in conf.sets if s.name == "hellaswag")
    src = OmegaConf.merge(OmegaConf.structured(SourceConfig), hs)
    sources.check_source(src)  # nothing to read before the cell runs
    with pytest.raises(ConfigError) as exc:
        sources.load_items(src)
    assert "cannot load hub dataset Rowan/hellaswag" in str(exc.value) and "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------------------
# (b) bad items: one line, before anything runs

BAD_ITEMS = [
    ("mc", {"context": "a", "label": 0}, "item 1 (line 1) has no choices field 'choices' (fields: context, label)"),
    ("mc", {"context": "a", "choices": ["x", "y"], "label": 2}, "item 1 (line 1): label 2 is out of range for 2 choices"),
    ("mc", {"context": "a", "choices": ["x", "y"]}, "item 1 (line 1) has no label field 'label' (fields: context, choices)"),
    ("cloze", {"context": "a"}, "item 1 (line 1) has no target field 'target' (fields: context)"),
    ("cloze", {"text": "a", "target": "b"}, "item 1 (line 1) has no context field 'context' (fields: text, target)"),
]


@pytest.mark.parametrize("task,row,expected", BAD_ITEMS, ids=[b[2][:40] for b in BAD_ITEMS])
def test_bad_items_are_one_line(tmp_path, task, row, expected):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError) as exc:
        sources.check_source(OmegaConf.structured(SourceConfig(name="t", kind="files", path=str(path), task=task)))
    assert str(exc.value) == f"eval set 't': {path} {expected}"


def test_unknown_task_and_builtin_tasks_are_refused():
    with pytest.raises(ConfigError, match="task must be lm, mc or cloze, got 'qa'"):
        sources.check_source(OmegaConf.structured(SourceConfig(name="t", path="python_docs", task="qa")))
    with pytest.raises(ConfigError, match="task mc needs kind files or hf"):
        sources.check_source(OmegaConf.structured(SourceConfig(name="t", path="python_docs", task="mc")))


# ---------------------------------------------------------------------------------------------
# (c) a real sweep: records, the collector, the per-example table and the report


@pytest.mark.slow
def test_task_sets_flow_into_records_collect_and_the_report(tmp_path, cache_dir, capsys):
    out = tmp_path / "outputs"
    res = run_main(
        capsys,
        "-m",
        "model=debug,tiny",
        "data=balanced,noisy,code_heavy",
        "eval=tasks_local",
        "sweep=mc",
        *FAST,
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache_dir}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    root = out / "mc"
    recs = [record.read(p.parent) for p in sorted(root.glob("*/result.json"))]
    assert len(recs) == 6 and all(r.status == "completed" for r in recs)
    for r in recs:
        assert set(r.final_loss) == {"prose", "code", "readme"} and set(r.final_metrics) == {"pyquiz", "pycloze"}
        for ms in r.final_metrics.values():
            assert 0 <= ms["acc"] <= 1 and 0 <= ms["prob_correct"] <= 1 and ms["ll_norm"] <= 0
        assert all(set(p["metrics"]) == {"pyquiz", "pycloze"} for p in r.eval_curve)
    cell = pd.read_parquet(root / recs[0].run_id / record.EXAMPLES)
    quiz = cell[cell["eval_set"] == "pyquiz"]
    assert len(quiz) == len(tasks.METRICS) * 24 and set(quiz["metric"]) == set(tasks.METRICS) and quiz["loss"].isna().all()
    assert quiz.groupby("metric", observed=True)["value"].mean().to_dict() == pytest.approx(recs[0].final_metrics["pyquiz"], rel=1e-5)

    rep = run_main(capsys, "report", str(root))
    assert rep.returncode == 0, rep.stderr[-3000:]
    results = pd.read_parquet(root / collect.RESULTS)
    task_rows = results[results["eval_set"].isin(["pyquiz", "pycloze"])]
    assert len(task_rows) == 6 * 2 * len(tasks.METRICS) and task_rows["higher_is_better"].all() and task_rows["loss"].isna().all()
    lm_rows = results[~results["eval_set"].isin(["pyquiz", "pycloze"])]
    assert (lm_rows["metric"] == "loss").all() and not lm_rows["higher_is_better"].any() and (lm_rows["loss"] == lm_rows["value"]).all()
    report = json.loads((root / "report.json").read_text())
    for s in ("pyquiz", "pycloze"):
        for m in tasks.METRICS:
            assert report["directions"][f"{s}/{m}"] == "higher"
    assert report["directions"]["prose"] == "lower"
    pe = pd.read_parquet(root / collect.EXAMPLES)
    assert set(pe.loc[pe["eval_set"] == "pycloze", "metric"]) == set(tasks.METRICS)
    assert "pyquiz/prob_correct" in (root / "report.md").read_text()
