"""proxyscale.analysis.importer: the importer analyses exactly the data given (issue 12, item 7).

Each test pins one rule of the module docstring with a CSV that the old importer
(proxyscale.report.analysis.prepare_csv) got wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyscale.analysis.importer import AnalysisError, order_sizes, parse_size, prepare_csv, reads_like_accuracy

REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")


def write(tmp_path: Path, text: str, name: str = "in.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def refused(path: str, **kw) -> str:
    with pytest.raises(AnalysisError) as exc:
        prepare_csv(path, **kw)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def long_csv(recipes, sizes=("1M", "60M"), metric="loss") -> str:
    rows = [f"{r},{s},{metric},{i + j / 10}" for i, r in enumerate(recipes) for j, s in enumerate(sizes)]
    return "recipe,size,metric,value\n" + "\n".join(rows) + "\n"


def test_recipe_names_are_kept_as_written(tmp_path):
    path = write(tmp_path, long_csv(["001", "1", "1.0", "None", "NA", "null"]))
    df, sizes, directions, notes, _ = prepare_csv(path)
    assert sorted(df["recipe"].unique()) == sorted(["001", "1", "1.0", "None", "NA", "null"])
    assert len(df) == 12 and sizes == ["1M", "60M"] and directions == {"loss": False}


def test_whitespace_only_name_is_empty_and_names_its_row(tmp_path):
    path = write(tmp_path, "recipe,size,metric,value\na,1M,loss,1\n  ,60M,loss,2\n")
    assert refused(path) == f"{path}: column recipe has empty values (row 3)"
    df, *_ = prepare_csv(write(tmp_path, "recipe,size,metric,value\n a ,1M,loss,1\nb,60M , loss ,2\n", "ws.csv"))
    assert list(df["recipe"]) == ["a", "b"] and list(df["size"]) == ["1M", "60M"] and list(df["metric"]) == ["loss", "loss"]


@pytest.mark.parametrize("small,large", [(".5B", "1.5B"), ("1.5B", "7B"), ("400M", "1B"), ("350k", "1M"), ("400M-1x", "1B-1x"), ("7B", "1T")])
def test_sizes_order_by_value(small, large):
    assert parse_size(small) < parse_size(large)
    assert order_sizes([large, small]) == [small, large]


def test_dot_sizes_in_a_csv(tmp_path):
    sizes = prepare_csv(write(tmp_path, long_csv(["a", "b"], sizes=("7B", ".5B", "1.5B")))).sizes
    assert sizes == [".5B", "1.5B", "7B"]
    assert refused(write(tmp_path, long_csv(["a", "b"], sizes=(".5B", "0.5B")), "same.csv")).endswith("they have the same parameter count")


def test_params_column_wins(tmp_path):
    text = "recipe,size,metric,value,params\na,small,loss,1,5e8\nb,small,loss,2,5e8\na,big,loss,1,7e9\nb,big,loss,2,7e9\n"
    assert prepare_csv(write(tmp_path, text))[1] == ["small", "big"]


def test_non_finite_value_names_its_row(tmp_path):
    path = write(tmp_path, "recipe,size,metric,value\na,1M,loss,1\nb,60M,loss,inf\n")
    assert refused(path) == f"{path}: non-finite value 'inf' (row 3)"
    path = write(tmp_path, "recipe,size,metric,value\na,1M,loss,nan\nb,60M,loss,1\n", "nan.csv")
    assert refused(path) == f"{path}: non-finite value 'nan' (row 2)"


def test_empty_step_is_refused_with_its_row(tmp_path):
    path = write(tmp_path, "recipe,size,metric,value,step\na,1M,loss,1,10\nb,1M,loss,2,\na,60M,loss,1,10\nb,60M,loss,2,10\n")
    assert refused(path) == f"{path}: empty step (row 3) while other rows have steps; give every row its step"


def steps_csv(tmp_path, short_last: int) -> str:
    rows = ["recipe,size,metric,value,step"]
    for size, final in (("1M", 200), ("60M", 100)):  # sizes may end at different steps
        for r in ("mix001", "mix002", "mix003"):
            last = short_last if (r, size) == ("mix001", "60M") else final
            rows += [f"{r},{size},Pile-CC,{3 - s / 1000},{s}" for s in range(50, last + 1, 50)]
    return write(tmp_path, "\n".join(rows) + "\n")


def test_full_table_with_steps_and_per_size_final_step(tmp_path):
    df, sizes, _, notes, _ = prepare_csv(steps_csv(tmp_path, 100))
    assert len(df) == 3 * 4 + 3 * 2  # every step is kept: the caller derives final values and early signal
    assert df.groupby(["recipe", "size"])["step"].max().to_dict() == {
        (r, s): (200 if s == "1M" else 100) for r in ("mix001", "mix002", "mix003") for s in sizes
    }
    assert any("1M: 200, 60M: 100" in n for n in notes)


def test_short_run_is_refused_naming_it(tmp_path):
    path = steps_csv(tmp_path, 50)
    assert refused(path) == f"{path}: runs stop short of step 100 at size 60M: mix001 (Pile-CC) at 50"


def test_short_run_excluded_and_warned_when_allowed(tmp_path):
    df, _, _, notes, _ = prepare_csv(steps_csv(tmp_path, 50), allow_short_runs=True)
    assert df[(df["recipe"] == "mix001") & (df["size"] == "60M")].empty  # every step of it, not just the last
    assert len(df[(df["recipe"] == "mix001") & (df["size"] == "1M")]) == 4
    assert any(n.startswith("excluded 1 run(s)") and "mix001 (Pile-CC) at 50" in n for n in notes)


def test_short_run_label_names_lr_and_seed(tmp_path):
    rows = ["recipe,size,metric,value,step,lr,seed"]
    for r in ("a", "b"):
        for size in ("1M", "60M"):
            for seed in (0, 1):
                last = 5 if (r, size, seed) == ("b", "1M", 1) else 10
                rows += [f"{r},{size},loss,1,{s},0.001,{seed}" for s in range(5, last + 1, 5)]
    path = write(tmp_path, "\n".join(rows) + "\n")
    assert refused(path) == f"{path}: runs stop short of step 10 at size 1M: b (loss, lr=0.001, seed=1) at 5"


DIR_CSV = "recipe,size,metric,value\na,1M,Core,1\nb,1M,Core,2\na,60M,Core,1\nb,60M,Core,2\na,1M,loss,1\nb,1M,loss,2\na,60M,loss,1\nb,60M,loss,2\n"


def test_direction_per_metric_by_argument(tmp_path):
    path = write(tmp_path, DIR_CSV)
    assert prepare_csv(path)[2] == {"Core": False, "loss": False}
    assert prepare_csv(path, higher_is_better=["Core"])[2] == {"Core": True, "loss": False}
    assert prepare_csv(path, higher_is_better=True)[2] == {"Core": True, "loss": True}  # the legacy flag
    assert (
        refused(path, higher_is_better=["Core", "MMLU", "acc"])
        == f"{path}: --higher-is-better names metric(s) not in the file: 'MMLU', 'acc' (metrics: Core, loss)"
    )


def test_direction_per_metric_by_column(tmp_path):
    text = DIR_CSV.replace("value\n", "value,direction\n", 1).replace(",Core,1\n", ",Core,1,HIGHER\n").replace(",Core,2\n", ",Core,2,\n")
    text = text.replace(",loss,1\n", ",loss,1,lower\n").replace(",loss,2\n", ",loss,2,Lower\n")
    path = write(tmp_path, text)
    df, _, directions, _, _ = prepare_csv(path)
    assert directions == {"Core": True, "loss": False} and "direction" not in df.columns
    assert prepare_csv(path, higher_is_better=["Core"])[2] == directions  # agreeing is fine
    assert refused(path, higher_is_better=["loss"]) == f"{path}: --higher-is-better names 'loss' but the direction column says lower"
    assert refused(path, higher_is_better=True) == f"{path}: --higher-is-better (every metric) covers 'loss' but the direction column says lower"


def test_direction_column_conflicts_and_bad_words_are_refused(tmp_path):
    path = write(tmp_path, "recipe,size,metric,value,direction\na,1M,acc,1,higher\nb,1M,acc,2,lower\na,60M,acc,1,\nb,60M,acc,2,\n")
    assert refused(path) == f"{path}: metric 'acc' has direction higher (row 2) and lower (row 3)"
    path = write(tmp_path, "recipe,size,metric,value,direction\na,1M,acc,1,up\nb,60M,acc,2,higher\n", "up.csv")
    assert refused(path) == f"{path}: direction must be higher or lower, got 'up' (row 2)"


@pytest.mark.parametrize(
    "name,accuracy",
    [
        ("MMLU", True),
        ("Core", True),
        ("val_acc", True),
        ("acc_norm", True),
        ("HellaSwag", True),
        ("arc_easy", True),
        ("exact_match", True),
        ("pass@1", True),
        ("f1", True),
        ("loss", False),
        ("val_loss", False),
        ("accumulated_loss", False),
        ("score_loss", False),
        ("Pile-CC", False),
        ("Embedding", False),
        ("scorer_ppl", False),
    ],
)
def test_accuracy_words_are_word_boundary_aware(name, accuracy):
    assert reads_like_accuracy(name) is accuracy


def test_accuracy_like_metric_analysed_lower_is_warned(tmp_path):
    path = write(tmp_path, DIR_CSV)
    warning = "metric 'Core' reads like an accuracy but is analysed as lower-is-better; pass --higher-is-better Core or a direction column"
    assert warning in prepare_csv(path)[3]
    assert not any("reads like" in n for n in prepare_csv(path, higher_is_better=["Core"])[3])


@needs_realdata
def test_dclm_imports_with_accuracy_warnings():
    df, sizes, directions, notes, _ = prepare_csv(str(REALDATA / "dclm_scales.csv"))
    assert len(df) == 99 and df["recipe"].nunique() == 11 and sizes == ["400M-1x", "1B-1x", "7B-1x"]
    assert directions == {"Core": False, "Extended": False, "MMLU": False}
    assert ("metric 'MMLU' reads like an accuracy but is analysed as lower-is-better; pass --higher-is-better MMLU or a direction column") in notes
    _, _, directions, notes, _ = prepare_csv(str(REALDATA / "dclm_scales.csv"), higher_is_better=["Core", "Extended", "MMLU"])
    assert all(directions.values()) and not any("reads like" in n for n in notes)


@needs_realdata
def test_regmix_imports_without_warnings():
    df, sizes, directions, notes, _ = prepare_csv(str(REALDATA / "regmix_1m_60m.csv"))
    assert len(df) == 6656 and df["recipe"].nunique() == 256 and sizes == ["1M", "60M"] and len(directions) == 13
    assert not any(directions.values()) and notes == []
    df, sizes, _, notes, _ = prepare_csv(str(REALDATA / "regmix_more.csv"))
    assert len(df) == (512 + 64) * 13 and sizes == ["1M", "1B"]
    assert not any("reads like" in n for n in notes)
    assert "no recipe has values at two sizes, so no proxy-target comparison can be made." in notes


def test_ignored_columns_are_noted(tmp_path):
    notes = prepare_csv(write(tmp_path, "recipe,size,metric,value,wd\na,1M,loss,1,0.1\nb,60M,loss,2,0.1\n"))[3]
    assert any("'wd' ignored" in n for n in notes)
