"""Search spaces: one define-by-run space per registered method (real Optuna trials), their
conditional structure, the papers' default ranges, YAML overrides and their validation."""

from __future__ import annotations

import pickle

import optuna
import pytest

from search_spaces import (DEFAULT_RANGES, SPACES, base_space, build_space, describe_space,
                           load_space_file, parse_overrides)
from search_spaces.space import SearchSpace
from trainables.config import HPARAMS, DistillConfig
from trainables.errors import UserError
from trainables.methods import METHODS

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(space, n=5, seed=0) -> list[dict]:
    """``n`` configs as Ray's OptunaSearch builds them: sampled params + the returned constants."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    out = []
    for i in range(n):
        trial = study.ask()
        fixed = space(trial)
        out.append({**trial.params, **fixed})
        study.tell(trial, float(i))
    return out


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registered_method_has_a_working_space(method):
    space = build_space(method)
    for config in sample(space):
        assert config, method
        assert set(config) <= set(HPARAMS)
        DistillConfig.from_dict({**config, "method": method})  # every sampled value is valid


@pytest.mark.parametrize("method", list(METHODS))
def test_spaces_are_conditional_on_the_method(method):
    cls = METHODS[method]
    searched = set(dict(describe_space(method)))
    assert "student_lr" in searched
    assert ("teacher_lr" in searched) == cls.teacher_learns
    assert ("update_strategy" in searched) == (method == "reptile-distil")
    assert ("beta" in searched) == (method in ("pkd", "meta-adaptive-kd"))
    assert ("pilot_update" in searched) == (method == "metadistil")
    assert ("meta_interval" in searched) == (method == "metadistil")
    if cls.uses_teacher:
        assert {"alpha", "temperature"} <= searched


def test_default_ranges_follow_the_papers_grids():
    """The papers' grids, except lambda: [3e-5, 3e-4] suits the default MiniLM-sized student (README)."""
    lam, mu = DEFAULT_RANGES["student_lr"], DEFAULT_RANGES["teacher_lr"]
    assert (lam.low, lam.high, lam.log) == (3e-5, 3e-4, True)
    assert (mu.low, mu.high, mu.log) == (1e-6, 1e-4, True)
    assert (DEFAULT_RANGES["alpha"].low, DEFAULT_RANGES["alpha"].high) == (0.0, 1.0)
    assert (DEFAULT_RANGES["temperature"].low, DEFAULT_RANGES["temperature"].high) == (1.0, 10.0)
    assert list(DEFAULT_RANGES["update_strategy"].choices) == ["first", "last", "skip", "both"]
    for config in sample(build_space("reptile-distil"), n=8):
        assert 3e-5 <= config["student_lr"] <= 3e-4 and 1e-6 <= config["teacher_lr"] <= 1e-4
        assert 0 <= config["alpha"] <= 1 and 1 <= config["temperature"] <= 10


def test_a_method_without_its_own_space_gets_the_base_space(monkeypatch):
    from trainables.methods.kd import KD

    class Learner(KD):
        name = "learner-test"
        teacher_learns = True

    monkeypatch.setitem(METHODS, Learner.name, Learner)
    assert Learner.name not in SPACES
    assert dict(describe_space(Learner.name)).keys() == {"student_lr", "alpha", "temperature", "teacher_lr"}
    assert build_space(Learner.name).fn is base_space


def test_unknown_method_is_a_user_error():
    with pytest.raises(UserError, match="unknown method 'nope'"):
        build_space("nope")


def test_yaml_overrides_ranges_fixes_and_adds(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("student_lr: {low: 2.0e-5, high: 3.0e-5, log: true}\n"
                    "update_strategy: [skip, both]\n"
                    "alpha: 0.25\n"
                    "noise_prob: {low: 0.0, high: 0.1}\n"
                    "meta_interval: {low: 1, high: 2}\n")
    overrides = load_space_file(str(path))
    space = build_space("reptile-distil", overrides, fixed={"temperature": 3.0})
    rows = dict(space.describe())
    assert rows["alpha"].startswith("= 0.25") and rows["temperature"].startswith("= 3.0")
    for config in sample(space, n=6):
        assert 2e-5 <= config["student_lr"] <= 3e-5
        assert config["update_strategy"] in ("skip", "both")
        assert config["alpha"] == 0.25 and config["temperature"] == 3.0
        assert 0.0 <= config["noise_prob"] <= 0.1  # not in reptile's space: added by the file
        assert config["meta_interval"] in (1, 2) and isinstance(config["meta_interval"], int)


def test_set_wins_over_the_file():
    space = build_space("kd", parse_overrides({"alpha": {"low": 0.1, "high": 0.2}}), fixed={"alpha": 0.9})
    assert all(c["alpha"] == 0.9 for c in sample(space, n=3))


@pytest.mark.parametrize("data, message", [
    ({"nope": 1}, "unknown hyperparameter 'nope'"),
    ({"alpha": {"low": 0.5, "high": 0.5}}, "empty range"),
    ({"alpha": {"low": 0.9, "high": 0.1}}, "inverted range"),
    ({"alpha": []}, "empty list of choices"),
    ({"alpha": {"low": "x", "high": 1}}, "low must be a number"),
    ({"alpha": {"low": 0, "high": 1, "log": "yes"}}, "log must be true or false"),
    ({"alpha": {"low": 0, "high": 1, "scale": 2}}, "unknown range key"),
    ({"alpha": {"low": 0}}, "needs both low and high"),
    ({"meta_interval": {"low": 1.5, "high": 3}}, "must be an integer"),
    ({"update_strategy": ["first", "middle"]}, "not one of"),
    ({"update_strategy": {"low": 0, "high": 1}}, "takes a list of choices"),
    ({"temperature": {"low": 0.0, "high": 4.0}}, "temperature must be > 0"),
    ({"student_lr": {"low": 0.0, "high": 1e-4, "log": True}}, "log range needs low > 0"),
    ([1, 2], "expected a mapping"),
])
def test_bad_overrides_are_user_errors(data, message):
    with pytest.raises(UserError, match=message):
        parse_overrides(data)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("alpha: [0.1, 0.2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space_file(str(path))
    with pytest.raises(UserError, match="does not exist"):
        load_space_file(str(tmp_path / "missing.yaml"))


def test_spaces_pickle_and_seeded_sampling_repeats():
    space = build_space("metadistil", parse_overrides({"noise_prob": {"low": 0.0, "high": 0.2}}))
    again = pickle.loads(pickle.dumps(space))  # Ray saves the searcher with the experiment
    assert isinstance(again, SearchSpace)
    assert sample(space, seed=7) == sample(again, seed=7)
    assert sample(space, seed=7) != sample(space, seed=8)
