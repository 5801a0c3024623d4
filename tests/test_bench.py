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


def test_bench_phases_show_the_parts_each_method_runs(capsys):
    """--phases: each entry's step split into its labelled parts; the parts do not overlap (they add
    up to at most the step) and name what the method runs (e.g. no student backward for
    metadistil without the pilot update: the real step reuses the inner gradient)."""
    entries = "kd,metadistil,metadistil:pilot_update=false,reptile-distil,reptile-distil:reptile_update=adam"
    rows = bench.main([*TINY, "--methods", entries, "--no-memory", "--phases"])
    parts = {r["method"]: r["phases"] for r in rows}
    common = {"teacher forward", "student forward", "student backward + update"}
    assert common <= set(parts[bench.REFERENCE]) and "teacher outputs (cached)" not in parts[bench.REFERENCE]
    assert "teacher outputs (cached)" in parts["kd"] and "teacher forward" not in parts["kd"]
    meta = {"teacher forward (with graph)", "student forward (inner)", "student backward (inner, with graph)",
            "inner step", "quiz forward", "meta backward", "teacher update"}
    assert meta | {"teacher forward", "student backward + update"} <= set(parts["metadistil"])
    ablation = set(parts["metadistil:pilot_update=false"])
    assert meta | {"student update"} <= ablation and not {"student backward + update", "teacher forward"} & ablation
    assert {"teacher forward", "student forward", "student backward (inner)", "teacher move",
            "student backward + update"} <= set(parts["reptile-distil"])
    assert {"teacher move", "teacher update"} <= set(parts["reptile-distil:reptile_update=adam"])
    for label, p in parts.items():
        labelled = sum(ms for name, ms in p.items() if name not in ("step", "other"))
        assert all(ms >= 0 for name, ms in p.items() if name != "other"), label
        assert labelled <= p["step"] + 1e-6 and p["other"] == pytest.approx(p["step"] - labelled), label
    printed = capsys.readouterr().out
    assert "| meta backward |" in printed and "**reptile-distil**" in printed


def test_nested_parts_are_refused_so_no_time_counts_twice():
    import torch

    from trainables.phases import phase, profile_phases

    def nested():
        with phase("outer"), phase("inner"):
            torch.ones(3).sum()

    with pytest.raises(RuntimeError, match="part 'inner' of the step runs inside part 'outer'"):
        profile_phases(nested, 1)

    def flat():
        for name in ("a", "b", "a"):
            with phase(name):
                torch.ones(3).sum()

    synced = []
    parts = profile_phases(flat, 2, sync=lambda: synced.append(1))
    assert len(synced) == 2 + 2 * 3  # the run's start and end, and every part's (the device's time on CUDA)
    assert list(parts) == ["a", "b", "other", "step"]
    assert parts["other"] == pytest.approx(parts["step"] - parts["a"] - parts["b"])
