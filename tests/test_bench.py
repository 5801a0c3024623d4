"""``python -m trainables.bench`` on a tiny random BERT: every entry timed through the engine's
step, ratios to the uncached KD step, peak memory from a subprocess per entry, JSON out."""

from __future__ import annotations

import json

import pytest

from trainables import bench

TINY = ["--teacher", "random:2:32:2:64", "--student-layers", "1", "--batch-size", "4", "--seq-len", "16",
        "--rounds", "2", "--steps", "1", "--warmup", "1"]


def test_bench_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = bench.main([*TINY, "--methods", "kd,metadistil:meta_interval=2", "--no-memory", "--json", str(out)])
    labels = [r["method"] for r in rows]
    assert labels == [bench.REFERENCE, "kd", "metadistil:meta_interval=2"]  # the reference is added
    assert rows[0]["time_ratio"] == 1.0
    for r in rows:
        assert r["ms_min"] <= r["ms_per_step"] <= r["ms_max"] and r["peak_mb"] is None
        assert r["time_ratio"] == pytest.approx(r["ms_per_step"] / rows[0]["ms_per_step"])
    assert json.loads(out.read_text()) == rows
    printed = capsys.readouterr().out
    assert "| metadistil:meta_interval=2 |" in printed and "ratios to kd:teacher_output_cache=false" in printed


def test_bench_measures_each_entrys_peak_memory_in_its_own_process():
    rows = bench.main([*TINY, "--methods", bench.REFERENCE])
    assert len(rows) == 1 and rows[0]["peak_ratio"] == 1.0
    assert 100 < rows[0]["peak_mb"] < 8000  # a fresh process with torch and a tiny model, not this one's peak


@pytest.mark.parametrize("entry,message", [("nope", "unknown method 'nope'"),
                                           ("kd:alpha", "expected NAME[:key=value...]"),
                                           ("kd:bogus=1", "unknown setting 'bogus'")])
def test_bench_bad_entries_are_one_line_errors(entry, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*TINY, "--methods", entry, "--no-memory"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
