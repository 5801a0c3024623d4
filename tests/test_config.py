import pytest

from trainables.config import HPARAMS, DistillConfig, parse_assignments
from trainables.errors import UserError


def test_set_parses_typed_values():
    got = parse_assignments(["alpha=0.7", "temperature=4", "student_layers=2", "pilot_update=false",
                             "kd_loss=mse", "inner_lr=none"])
    assert got == {"alpha": 0.7, "temperature": 4.0, "student_layers": 2, "pilot_update": False,
                   "kd_loss": "mse", "inner_lr": None}
    assert isinstance(got["temperature"], float) and isinstance(got["student_layers"], int)
    cfg = DistillConfig().with_overrides(["alpha=0.25"])
    assert cfg.alpha == 0.25 and cfg.effective_inner_lr == cfg.student_lr


@pytest.mark.parametrize("item,pattern", [
    ("alhpa=0.5", r"unknown hyperparameter 'alhpa'.*student_lr"),
    ("student_layers=two", r"student_layers='two' is not a valid int"),
    ("student_layers=2.5", r"student_layers='2.5' is not a valid int"),
    ("pilot_update=maybe", r"pilot_update='maybe' is not a valid bool"),
    ("kd_loss=l1", r"kd_loss='l1' is not one of: kl, mse"),
    ("alpha", r"key=value"),
    ("task=cola", r"unknown hyperparameter 'task'"),
])
def test_bad_set_values_name_the_value_and_choices(item, pattern):
    with pytest.raises(UserError, match=pattern):
        parse_assignments([item])


def test_ranges_and_unknown_keys_are_checked():
    with pytest.raises(UserError, match=r"student_lr must be in \(0, 1\], got 0"):
        DistillConfig(student_lr=0)
    with pytest.raises(UserError, match="noise_prob"):
        DistillConfig(noise_prob=1.5)
    with pytest.raises(UserError, match="unknown config key.*'?bogus"):
        DistillConfig.from_dict({"bogus": 1})


def test_hyperparameter_names_are_the_documented_ones():
    for name in ("student_lr", "teacher_lr", "inner_lr", "alpha", "beta", "temperature", "update_strategy",
                 "pilot_update", "meta_interval", "student_layers", "noise_prob", "warmup_epochs",
                 "batch_size", "epochs", "seed", "max_seq_length", "kd_loss", "pkd_layer_map"):
        assert name in HPARAMS
    assert "task" not in HPARAMS


def test_data_dir_defaults_to_env(monkeypatch):
    monkeypatch.setenv("TUNER_DATA_DIR", "/some/where")
    assert DistillConfig().data_dir == "/some/where"
