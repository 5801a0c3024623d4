"""A multi-objective sweep (``--objectives eval_score,student_params``): which metrics the search
trades off, and the student choice it searches.

Every objective is a metric each trial reports (in every evaluation's report and the final one;
:data:`OBJECTIVES`): the dev score ``eval_score`` (maximised) and the student's costs, minimised:
``student_params`` (counted), ``latency_ms`` and ``latency_ms_b32`` (measured on the trial's
device at batch 1 and 32: :func:`trainables.experiment.latency_of`). The search is Optuna's
multi-objective TPE through ``OptunaSearch(metric=[...], mode=[...])``; Optuna gets the values of
a trial's final report.

Rules of a multi-objective sweep (checked by :func:`check_spec` before Ray starts):

* ``eval_score`` is one of the objectives (the sweep's best trial is the front's highest
  ``eval_score``) and there are at least two, each named once;
* the scheduler is FIFO: ASHA (or any scheduler that stops or perturbs trials by one metric)
  would judge trials by one objective, so asking for one is said on stderr and FIFO runs;
* it is an Optuna search: a ``--grid`` sweep has no searcher to give objectives to, and an Optuna
  study kept in ``--study-storage`` has one direction per study (not continued across sweeps).

The student is searched too (:func:`student_search`): ``student_layers`` of the default truncated
student (1 .. the teacher's depth, unless ``--student-layers`` / ``--set`` fixes it or ``--space``
gives a range), and with ``--students A,B,C`` a categorical ``student`` over those models
(:mod:`search_spaces.students`; the entry ``truncated`` is the default truncated student, the only
one whose ``student_layers`` is searched).
"""

from __future__ import annotations

import sys

from trainables.errors import UserError

from tuner.mlflow_schema import OBJECTIVE_MODES

#: objective -> max | min (every objective is a final metric of the trials)
OBJECTIVES = OBJECTIVE_MODES
SCORE = "eval_score"
#: the one scheduler of a multi-objective sweep
SCHEDULER = "fifo"


def split_names(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (blank entries dropped); None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def parse_objectives(value: str | list[str] | None) -> list[str] | None:
    """The checked objective names of ``--objectives`` (None: a single-objective sweep)."""
    names = split_names(value)
    if names is None:
        return None
    valid = ", ".join(OBJECTIVES)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UserError(f"unknown objective(s) {', '.join(map(repr, unknown))} in --objectives; valid: {valid}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"--objectives names {', '.join(repeated)} more than once")
    if len(names) < 2:
        raise UserError(f"--objectives needs at least two objectives, e.g. eval_score,student_params "
                        f"(got {','.join(names) or 'none'}; valid: {valid})")
    if SCORE not in names:
        raise UserError(f"--objectives must include {SCORE} (the score the costs are traded against); "
                        f"got {','.join(names)}")
    return names


def metrics_and_modes(objectives: list[str] | None) -> tuple[str | list[str], str | list[str]]:
    """The searcher's ``metric`` and ``mode``: lists for a multi-objective sweep, else
    ``eval_score``/``max``."""
    if not objectives:
        return SCORE, "max"
    return list(objectives), [OBJECTIVES[n] for n in objectives]


def check_spec(spec) -> None:
    """Check (and settle) a multi-objective :class:`~tuner.spec.SweepSpec` in place: objectives
    parsed, FIFO scheduler (said on stderr when another was asked for), no grid, no kept study;
    ``--students`` parsed (no ``--student`` beside it, no grid)."""
    spec.students = split_names(spec.students) or None
    if spec.students:
        if spec.grid:
            raise UserError("--students is a choice of the Optuna search; a --grid sweep has no search")
        if spec.config.get("student"):
            raise UserError(f"give either --student ({spec.config['student']}) or --students "
                            f"({','.join(spec.students)}), not both")
        repeated = sorted({n for n in spec.students if spec.students.count(n) > 1})
        if repeated:
            raise UserError(f"--students names {', '.join(repeated)} more than once")
    spec.objectives = parse_objectives(spec.objectives)
    if not spec.objectives:
        return
    if spec.grid:
        raise UserError("--objectives needs the Optuna search; a --grid sweep has no searcher")
    if spec.study_storage:
        raise UserError("--objectives cannot continue a --study-storage study (one study has one set of "
                        "directions); run the multi-objective search without --study-storage")
    if spec.scheduler and spec.scheduler != SCHEDULER:
        print(f"note: a multi-objective search runs the FIFO scheduler (every trial trains to the end): "
              f"--scheduler {spec.scheduler} would stop or change trials by one metric", file=sys.stderr, flush=True)
    spec.scheduler = SCHEDULER


def searches_students(spec) -> bool:
    """Whether the sweep searches the student (a multi-objective sweep, or ``--students``)."""
    return bool(spec.objectives or spec.students)


def student_search(spec, cfg, space):
    """``space`` with the student searched (see the module docstring), for a sweep that
    :func:`searches_students`; every student of ``--students`` is checked here, before Ray starts:
    its config loads and its tokenizer (where it has one) is the teacher's."""
    from search_spaces.ranges import Int
    from search_spaces.students import TRUNCATED, with_students
    from trainables.assembly import check_one_tokenizer
    from trainables.models import load_tokenizer, model_depth

    from search_spaces.multi import MultiSpace

    students = list(spec.students or [])
    teacher = cfg.teacher_checkpoint or cfg.teacher
    for name in students:
        if name != TRUNCATED:
            model_depth(name)  # a bad model id fails here
            check_one_tokenizer(load_tokenizer(teacher), [teacher], name)
    truncated = not students or TRUNCATED in students
    depth = model_depth(cfg.teacher) or cfg.student_layers

    def joined(one):
        layers = None
        if truncated and not cfg.student and "student_layers" not in one.fixed:
            layers = one.ranges.get("student_layers") or (Int(1, depth) if depth > 1 else None)
        return with_students(one, students, layers)

    if isinstance(space, MultiSpace):  # --methods: each method's space searches the student after it
        return MultiSpace({method: joined(one) for method, one in space.spaces.items()})
    return joined(space)
