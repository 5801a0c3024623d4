"""The figures' style and files (analysis.figure_style, analysis.plots, analysis.teacher_ref): PNG and
PDF written, titles inside the figure, the score-axis rule, the teacher's reference line, coinciding
lines kept apart, no std for one seed; and analysis.dynamics' exit code when there is nothing to plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.lines import Line2D

from analysis import compare, dynamics, figure_style, paper_table, plots, sensitivity, studies
from analysis.store import Store
from analysis.teacher_ref import TeacherScore, teacher_scores
from analysis_fill import Filler

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_DEV = 0.93
CURVE = [(10, 0.60), (20, 0.80), (30, 0.85)]


@pytest.fixture(scope="module")
def store_with_teacher(tmp_path_factory):
    """kd (3 seeds of one config) and metadistil (one run) on sst2, the sweep run holding the
    teacher's dev accuracy; a temperature study whose two methods score the same at every point."""
    f = Filler(str(tmp_path_factory.mktemp("mlflow") / "mlflow.db"))
    ids = {}
    for seed, score in {42: 0.84, 43: 0.85, 44: 0.86}.items():
        ids[f"kd_{seed}"] = f.trial("kd", score, seed=seed, alpha=0.5)
    ids["metadistil"] = f.trial("metadistil", 0.88, sweep="sweep-b", eval_teacher=True, history={
        "eval_score": CURVE, "eval_accuracy": CURVE,
        "teacher_eval_score": [(10, 0.93), (20, 0.91), (30, 0.90)],
        "teacher_eval_accuracy": [(10, 0.93), (20, 0.91), (30, 0.90)]})
    for sweep in ("sweep-a", "sweep-b"):
        f.client.log_metric(f.sweeps[sweep], "teacher_eval_accuracy", TEACHER_DEV)
    for method in ("kd", "metadistil"):
        for t, score in {1.0: 0.80, 2.0: 0.82, 5.0: 0.83}.items():
            f.trial(method, score, sweep="study-t", study="temperature", temperature=t)
    return f, ids


def _read_back(png: str) -> None:
    """Both formats written, non-empty, each with its file signature."""
    pdf = os.path.splitext(png)[0] + ".pdf"
    for path, magic in ((png, b"\x89PNG"), (pdf, b"%PDF")):
        assert os.path.getsize(path) > 1000, path
        with open(path, "rb") as fh:
            assert fh.read(4) == magic, path


def _teacher_line(ax, value: float) -> Line2D:
    lines = [ln for ln in ax.get_lines() if "teacher" in str(ln.get_label())
             and np.allclose(np.asarray(ln.get_ydata(), dtype=float), value)]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    assert f"{value:.4g}" in lines[0].get_label() and lines[0].get_linestyle() == "--"
    return lines[0]


def _error_bars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _title_inside(fig, ax) -> bool:
    box = ax.title.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height


# ---- the axis rule ------------------------------------------------------------------------------

def test_score_axis_rule():
    head = figure_style.HEADROOM
    assert figure_style.score_limits([0.84, 0.86, 0.93]) == pytest.approx((0.0, 1.0 + head))
    bottom, top = figure_style.score_limits([-0.05, 0.3])          # MCC below 0
    assert bottom == pytest.approx(-0.05 - 0.05 * 1.05) and top == pytest.approx(1.0 + head * (1.0 - bottom))
    assert figure_style.score_limits([2.0, 40.0]) == pytest.approx((0.0, 40.0 * (1 + head)))
    assert figure_style.score_limits([]) == pytest.approx((0.0, 1.0 + head))


# ---- compare: files, axis, teacher, error bars --------------------------------------------------

def test_compare_writes_png_and_pdf_with_the_teacher_line(store_with_teacher, tmp_path, capsys):
    f, _ = store_with_teacher
    table = compare.main(["--task", "sst2", "--mlflow-uri", f.uri, "--out", str(tmp_path)])
    _read_back(str(tmp_path / "compare.png"))
    assert "compare.pdf" in capsys.readouterr().out
    teachers = teacher_scores(Store(f.uri), Store(f.uri).runs("sst2", exclude_studies=True), "accuracy")
    assert teachers == [TeacherScore(TEACHER_DEV, "teacher", teachers[0].source)]
    assert teachers[0].source.startswith("sweep run ")

    fig, plotted = plots.comparison_figure(table, value="accuracy_mean", error="accuracy_std",
                                           ylabel="dev accuracy", title="t", teachers=teachers)
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((0.0, 1.0 + figure_style.HEADROOM))
    _teacher_line(ax, TEACHER_DEV)
    bars = _error_bars(ax)        # kd has 3 seeds, metadistil one: one error bar, at kd's bar
    assert list(plotted["n"]) == [1, 3] and len(bars) == 1
    assert len(bars[0].lines[2][0].get_segments()) == 1

    single = table[table["n_seeds"] == 1]
    fig, _ = plots.comparison_figure(single, value="accuracy_mean", error="accuracy_std")
    assert _error_bars(fig.axes[0]) == [] and not any("teacher" in str(ln.get_label())
                                                      for ln in fig.axes[0].get_lines())


def test_given_teacher_score_wins_and_no_source_is_no_line(tmp_path):
    assert teacher_scores(None, None, "accuracy", given=0.5) == [TeacherScore(0.5, "teacher", "--teacher-score")]
    runs = pd.DataFrame({"run_id": ["r1"], "teacher_id": [str(tmp_path / "nowhere")]})
    assert teacher_scores(None, runs, "accuracy") == []


def test_teacher_score_from_the_teachers_info_file(tmp_path):
    folders = []
    for name, acc in (("t1", 0.91), ("t2", 0.89)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "teacher_info.json").write_text(json.dumps({"dev_metrics": {"eval_accuracy": acc,
                                                                              "eval_score": acc}}))
        folders.append(str(folder))
    one = teacher_scores(None, pd.DataFrame({"run_id": ["a"], "teacher_id": [folders[0]]}), "accuracy")
    assert [(t.value, t.label) for t in one] == [(0.91, "teacher")]
    both = teacher_scores(None, pd.DataFrame({"run_id": ["a", "b"], "teacher_id": folders}), "accuracy")
    assert sorted((t.value, t.label) for t in both) == [(0.89, "teacher t2"), (0.91, "teacher t1")]
    # a metric the teacher's record lacks, not the primary one: no line
    assert teacher_scores(None, pd.DataFrame({"run_id": ["a"], "teacher_id": [folders[0]]}), "f1",
                          primary=False) == []


# ---- titles --------------------------------------------------------------------------------------

def test_long_titles_are_wrapped_inside_the_figure(tmp_path):
    table = pd.DataFrame({"method": ["kd"], "score_mean": [0.8], "score_std": [np.nan], "n_seeds": [1]})
    title = "a-rather-long-task-name: dev accuracy by method, " * 3
    fig, _ = plots.comparison_figure(table, value="score_mean", error="score_std", title=title)
    fig.canvas.draw()
    assert not _title_inside(fig, fig.axes[0])     # as drawn, it would be clipped
    written = figure_style.save_figure(fig, str(tmp_path / "long.png"))
    assert written == [str(tmp_path / "long.png"), str(tmp_path / "long.pdf")]
    assert _title_inside(fig, fig.axes[0]) and "\n" in fig.axes[0].get_title()
    _read_back(written[0])


# ---- sensitivity: coinciding lines, error bars only for several seeds ---------------------------

def _points(seeds: int) -> pd.DataFrame:
    rows = [{"method": m, "value": t, "seed": s, "score": 0.8 + 0.01 * t + 0.001 * s}
            for m in ("kd", "metadistil") for t in (1.0, 2.0, 5.0) for s in range(seeds)]
    return pd.DataFrame(rows)


def test_coinciding_lines_stay_apart_and_one_seed_has_no_error_bars():
    fig, agg = plots.sensitivity_figure(_points(1), xlabel="T", ylabel="dev accuracy", log_x=True)
    ax = fig.axes[0]
    kd, meta = [ln for ln in ax.get_lines() if ln.get_label() in ("kd", "metadistil")]
    assert np.allclose(kd.get_ydata(), meta.get_ydata())          # the same values ...
    assert kd.get_marker() != meta.get_marker() and kd.get_linestyle() != meta.get_linestyle()
    fig.canvas.draw()
    xy = np.column_stack([kd.get_xdata(), kd.get_ydata()]).astype(float)
    shift = meta.get_transform().transform(xy)[:, 0] - kd.get_transform().transform(xy)[:, 0]
    assert np.all(shift > 5)                                      # ... drawn side by side (pixels)
    assert _error_bars(ax) == [] and (agg["n"] == 1).all()
    assert ax.get_ylim()[0] == 0.0

    fig, agg = plots.sensitivity_figure(_points(2), xlabel="T", ylabel="dev accuracy",
                                        teachers=[("teacher", 0.9)])
    assert (agg["n"] == 2).all() and len(_error_bars(fig.axes[0])) == 2
    _teacher_line(fig.axes[0], 0.9)


def test_study_replot_writes_both_formats_with_the_teacher(store_with_teacher, tmp_path, capsys):
    f, _ = store_with_teacher
    out = sensitivity.main(["--study", "temperature", "--task", "sst2", "--from-mlflow",
                            "--mlflow-uri", f.uri, "--out", str(tmp_path)])
    _read_back(out["png"])
    assert out["pdf"] == str(tmp_path / "sensitivity-temperature.pdf")
    assert "sensitivity-temperature.pdf" in capsys.readouterr().out
    points = studies.recorded_study(Store(f.uri), studies.get_study("temperature"), "sst2")
    from analysis.teacher_ref import teacher_scores_of_points

    assert [t.value for t in teacher_scores_of_points(Store(f.uri), points)] == []  # study sweep: none logged
    assert [t.value for t in teacher_scores_of_points(Store(f.uri), points, given=0.9)] == [0.9]


# ---- dynamics --------------------------------------------------------------------------------------

def test_dynamics_teacher_student_has_the_fine_tuned_teachers_line(store_with_teacher, tmp_path):
    f, ids = store_with_teacher
    out = dynamics.plot_run(Store(f.uri), ids["metadistil"], str(tmp_path))
    ts = out["teacher-student"]
    _read_back(ts["png"])
    assert [t.value for t in ts["teachers"]] == [TEACHER_DEV]
    fig, _ = plots.step_figure(ts["data"], columns={"teacher": "teacher", "student": "student"},
                               ylabel="dev accuracy", score=True, teachers=[("fine-tuned teacher", TEACHER_DEV)])
    ax = fig.axes[0]
    _teacher_line(ax, TEACHER_DEV)
    assert ax.get_ylim() == pytest.approx((0.0, 1.0 + figure_style.HEADROOM))
    teacher, student = [ln for ln in ax.get_lines() if ln.get_label() in ("teacher", "student")]
    assert teacher.get_marker() != student.get_marker()
    given = dynamics.plot_run(Store(f.uri), ids["metadistil"], str(tmp_path), teacher_score=0.5)
    assert [t.value for t in given["teacher-student"]["teachers"]] == [0.5]


def test_dynamics_with_no_runs_exits_2_with_one_line(tmp_path):
    Filler(str(tmp_path / "mlflow.db"), experiment="empty")           # a store, an experiment, no runs
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "analysis.dynamics", "--experiment", "empty", "--method", "kd"],
                          cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no "), done.stderr
    assert done.stdout == "" and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("argv, message", [
    (["--experiment", "empty", "--method", "kd"], "no trial runs in experiment 'empty'"),
    (["--experiment", "empty", "--run-id", "0" * 32], "no run with id"),
    (["--experiment", "nope", "--method", "kd"], "no experiment 'nope'"),
    (["--method", "kd", "--mlflow-uri", "missing.db"], "no MLflow store")])
def test_dynamics_main_with_no_runs_exits_2(argv, message, tmp_path, capsys, monkeypatch):
    f = Filler(str(tmp_path / "mlflow.db"), experiment="empty")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    argv = argv if "--mlflow-uri" in argv else [*argv, "--mlflow-uri", f.uri]
    with pytest.raises(SystemExit) as exit_:
        dynamics.main([*argv, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not list(tmp_path.glob("*.png"))


# ---- the papers' table figure ----------------------------------------------------------------------

def test_paper_table_figure_error_bars_only_for_several_seeds(tmp_path):
    rows = [{"task": "sst2", "method": m, "seed": s, "metric": "accuracy", "split": "dev", "value": v}
            for m, base in (("teacher", 0.92), ("kd", 0.84), ("metadistil", 0.85)) for s, v in
            zip((1, 2, 3), (base, base + 0.01, base - 0.01))]
    rows += [{"task": "cola", "method": m, "seed": 1, "metric": "mcc", "split": "dev", "value": v}
             for m, v in (("kd", -0.05), ("metadistil", 0.25))]
    out = paper_table.write_outputs(pd.DataFrame(rows), str(tmp_path))
    _read_back(out["paths"]["png"])
    fig, _ = plots.grouped_figure(out["table"], title="t")
    sst2, cola = fig.axes[:2]
    assert len(_error_bars(sst2)) == 2 and _error_bars(cola) == []
    assert sst2.get_ylim() == pytest.approx((0.0, 1.0 + figure_style.HEADROOM))
    assert cola.get_ylim()[0] < -0.05 and cola.get_ylim()[1] > 1.0
    teacher = [c for c in sst2.collections if "teacher" in str(c.get_label())]
    assert len(teacher) == 1 and np.allclose(teacher[0].get_segments()[0][:, 1], 0.92)
