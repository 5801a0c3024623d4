"""analysis.paper_table on hand-built per-seed results: the numbers, the t-test, the formatting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from analysis import paper_table as P

KD = {43: 0.80, 44: 0.84, 45: 0.83}
META = {43: 0.83, 44: 0.85, 45: 0.88}
TEACHER = {43: 0.90, 44: 0.92, 45: 0.91}


def rows(task, method, values, metric="accuracy", split="dev"):
    return [{"task": task, "method": method, "seed": s, "metric": metric, "split": split, "value": v}
            for s, v in values.items()]


@pytest.fixture
def results() -> pd.DataFrame:
    data = (rows("sst2", "teacher", TEACHER) + rows("sst2", "kd", KD) + rows("sst2", "metadistil", META)
            + rows("sst2", "kd", {43: 0.7, 44: 0.71, 45: 0.72}, split="test")
            + rows("sst2", "metadistil", {43: 0.75, 44: 0.74, 45: 0.78}, split="test")
            + rows("sst2", "kd", {43: 11e6, 44: 11e6, 45: 11e6}, metric="params", split="cost")
            + rows("cola", "kd", {43: 0.20}, metric="mcc") + rows("cola", "metadistil", {43: 0.25}, metric="mcc")
            + rows("cola", "pkd", {44: 0.3}, metric="mcc"))
    return pd.DataFrame(data)


def test_mean_std_and_paired_ttest_are_exact(results):
    table = P.paper_table(results).set_index(["task", "method"])
    assert list(table.loc["sst2"].index) == ["teacher", "kd", "metadistil"]  # teacher first
    kd, meta = np.array(list(KD.values())), np.array(list(META.values()))
    row = table.loc[("sst2", "metadistil")]
    assert row["n"] == 3 and row["dev_accuracy_n"] == 3
    assert row["dev_accuracy_mean"] == pytest.approx(meta.mean(), abs=1e-12)
    assert row["dev_accuracy_std"] == pytest.approx(np.std(meta, ddof=1), abs=1e-12)
    assert row["dev_accuracy_delta"] == pytest.approx((meta - kd).mean(), abs=1e-12)
    assert row["dev_accuracy_p"] == pytest.approx(ttest_rel(meta, kd).pvalue, rel=1e-12)
    assert row["dev_accuracy_pairs"] == 3
    test_kd, test_meta = np.array([0.7, 0.71, 0.72]), np.array([0.75, 0.74, 0.78])
    assert row["test_accuracy_p"] == pytest.approx(ttest_rel(test_meta, test_kd).pvalue, rel=1e-12)
    assert pd.isna(table.loc[("sst2", "kd"), "dev_accuracy_delta"])  # the baseline has no Δ
    assert table.loc[("sst2", "teacher"), "dev_accuracy_mean"] == pytest.approx(0.91)
    assert table.loc[("sst2", "kd"), "params"] == 11e6

    md = P.task_markdown(P.paper_table(results), "sst2")
    lines = md.splitlines()
    assert lines[0].startswith("| Method | n | #Params |") and "test accuracy" in lines[0]
    assert lines[2].startswith("| teacher | 3 |")
    kd_cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert kd_cells[0] == "kd" and kd_cells[-1] == "—" and kd_cells[-2] == "—"
    assert f"{100 * kd.mean():.2f} ± {100 * np.std(kd, ddof=1):.2f}" in kd_cells
    meta_cells = [c.strip() for c in lines[4].split("|")[1:-1]]
    p = ttest_rel(meta, kd).pvalue
    assert meta_cells[-2] == f"{100 * (meta - kd).mean():+.2f} (p={p:.3f})"


def test_single_seed_has_no_plus_minus_and_no_test_columns(results):
    table = P.paper_table(results)
    cola = table[table["task"] == "cola"].set_index("method")
    assert cola.loc["kd", "n"] == 1 and pd.isna(cola.loc["kd", "dev_mcc_std"])
    md = P.task_markdown(table, "cola")
    assert "±" not in md and "test" not in md
    assert "| kd | 1 | 20.00 | — |" in md
    assert "| metadistil | 1 | 25.00 | +5.00 (p n/a) |" in md  # one pair: no p-value
    assert "| pkd | 1 | 30.00 | n/a |" in md                  # no seed in common with kd

    dev_only = results[results["split"] != "test"]
    t = P.paper_table(dev_only)
    assert not [c for c in t.columns if c.startswith("test_")]
    no_kd = P.paper_table(results[results["method"] != "kd"])
    assert no_kd["dev_accuracy_delta"].isna().all()
    assert "n/a" in P.task_markdown(no_kd, "sst2")


def test_outputs_and_remake_from_csv(results, tmp_path):
    out = P.write_outputs(results, str(tmp_path / "a"))
    for path in out["paths"].values():
        assert (tmp_path / "a" / path.split("/")[-1]).stat().st_size > 0
    assert "ttest_rel" in out["markdown"] and "ddof=1" in out["markdown"]
    bars = out["plotted"]
    assert set(bars["method"]) == {"teacher", "kd", "metadistil", "pkd"}
    table = P.main(["--from", out["paths"]["csv"], "--out", str(tmp_path / "b")])
    pd.testing.assert_frame_equal(table, out["table"])
    assert (tmp_path / "b" / "reproduce.md").read_text() == out["markdown"]


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        P.main(["--from", str(tmp_path / "missing.csv")])
    assert exit_info.value.code == 2
    with pytest.raises(P.UserError, match="lack column"):
        P.paper_table(pd.DataFrame({"task": ["x"]}))
