"""Every meta method (and kd, pkd) trains on real SST-2 rows with the packaged MiniLM as the teacher and
its first layer as the student, through the same code as ``python -m trainables.run``; plus the
options, the CLI end to end, and static teaching from a saved meta-learned teacher."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from meta_helpers import one_thread  # noqa: F401 (autouse fixture)
from safetensors.torch import load_file

from trainables.config import DistillConfig
from trainables.errors import UserError
from trainables.experiment import prepare
from trainables.models import packaged_minilm_path

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir() -> str:
    """$TUNER_DATA_DIR (relative paths are relative to the repo root), else <repo>/../shared/data."""
    path = Path(os.environ.get("TUNER_DATA_DIR") or REPO.parent / "shared" / "data")
    path = (path if path.is_absolute() else REPO / path).resolve()
    if not (path / "sst2").is_dir():
        pytest.skip(f"no SST-2 copy under {path}; set TUNER_DATA_DIR to the shared data dir")
    return str(path)


@pytest.fixture(scope="module")
def minilm() -> str:
    return packaged_minilm_path()


def config(data_dir, method, **overrides) -> DistillConfig:
    # 18 train / 6 quiz rows, 3 steps an epoch; the teacher's head is untrained (near-uniform soft
    # targets), so the task term (1 - alpha) carries most of the loss the student can lower
    values = {"method": method, "data_dir": data_dir, "max_train_samples": 24, "quiz_fraction": 0.25,
              "max_eval_samples": 8, "max_seq_length": 32, "batch_size": 6, "epochs": 6, "student_layers": 1,
              "student_lr": 3e-3, "alpha": 0.1, "temperature": 1.0, "lr_warmup_ratio": 0.0, "device": "cpu",
              "seed": 0}
    return DistillConfig(**{**values, **overrides})


def epoch_means(result, steps_per_epoch: int) -> list[float]:
    losses = result.losses
    return [sum(losses[i:i + steps_per_epoch]) / steps_per_epoch for i in range(0, len(losses), steps_per_epoch)]


@pytest.mark.parametrize("method", ["kd", "pkd", "metadistil", "meta-adaptive-kd", "reptile-distil"])
def test_loss_decreases_on_real_sst2_rows(data_dir, minilm, method):
    # pkd's patient loss matches the student's intermediate layers: a 2-layer student has one
    overrides = {"student_layers": 2} if method == "pkd" else {}
    prep = prepare(config(data_dir, method, **overrides), teacher_paths=[minilm])
    result = prep.engine.fit()
    means = epoch_means(result, prep.engine.steps_per_epoch)
    assert all(math.isfinite(x) for x in result.losses)
    assert sum(means[-2:]) / 2 < 0.9 * sum(means[:2]) / 2, means  # last two epochs vs first two


def test_metadistil_options_together(data_dir, minilm):
    """No pilot update, a meta step every 2nd step, noise, a warm-up epoch, 2 teachers."""
    cfg = config(data_dir, "metadistil", epochs=1, warmup_epochs=1, pilot_update=False, meta_interval=2,
                 noise_prob=0.2, noise_token="random", num_quiz_batches=2)
    prep = prepare(cfg, teacher_paths=[minilm, minilm])
    teachers = prep.engine.method.teachers
    before = [t.classifier.weight.detach().clone() for t in teachers]
    result = prep.engine.fit()
    steps = prep.engine.steps_per_epoch
    assert len(result.logs) == 2 * steps and all(math.isfinite(x) for x in result.losses)
    assert ["quiz_loss" in log for log in result.logs[steps:]] == [i % 2 == 0 for i in range(steps)]
    for t, w in zip(teachers, before):
        assert not torch.equal(t.classifier.weight, w)  # every teacher was meta-updated


def test_meta_adaptive_kd_logs_its_alpha_beta_trajectory(data_dir, minilm):
    cfg = config(data_dir, "meta-adaptive-kd", epochs=1, num_inner_batches=2, num_quiz_batches=2,
                 adaptive_lr=0.05, alpha=0.3, beta=0.7)
    result = prepare(cfg, teacher_paths=[minilm]).engine.fit()
    alphas = [log["alpha"] for log in result.logs]
    betas = [log["beta"] for log in result.logs]
    assert len(alphas) == len(result.losses) and len(set(alphas)) > 1 and len(set(betas)) > 1
    assert all(math.isfinite(a) and a >= 0 for a in alphas + betas)
    assert result.history[-1]["train_alpha"] == pytest.approx(sum(alphas) / len(alphas))


def test_reptile_distil_moves_only_the_mapped_teacher_layers(data_dir, minilm):
    cfg = config(data_dir, "reptile-distil", epochs=1, student_layers=2, update_strategy="skip",
                 reptile_update="adam", teacher_lr=1e-3)
    prep = prepare(cfg, teacher_paths=[minilm])
    teacher = prep.engine.method.teachers[0]
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    prep.engine.fit()
    moved = {n for n, p in teacher.named_parameters() if not torch.equal(p, before[n])}
    layers = {int(n.split(".")[3]) + 1 for n in moved if ".encoder.layer." in n}
    assert layers == {3, 6}  # skip, 6 -> 2
    assert "classifier.weight" in moved and any("embeddings" in n for n in moved)


def test_reptile_distil_needs_a_teacher_depth_multiple_of_the_student_depth(data_dir, minilm):
    with pytest.raises(UserError, match="multiple"):
        prepare(config(data_dir, "reptile-distil", student_layers=4), teacher_paths=[minilm])


def test_cli_metadistil_then_static_teaching_from_the_saved_teacher(data_dir, minilm, tmp_path, capsys):
    from trainables.run import main

    common = ["--data-dir", data_dir, "--max-train-samples", "24", "--max-eval-samples", "16",
              "--max-seq-length", "32", "--batch-size", "8", "--epochs", "1", "--device", "cpu", "--quiet"]
    out = tmp_path / "meta"
    summary = main(["--method", "metadistil", "--teachers", minilm, "--output-dir", str(out),
                    "--set", "student_layers=1", "--set", "teacher_lr=1e-3", *common])
    teacher_dir = out / "teacher"
    assert summary["teacher_path"] == str(teacher_dir)
    saved = load_file(str(teacher_dir / "model.safetensors"))
    original = load_file(os.path.join(minilm, "model.safetensors"))
    name = next(n for n in saved if n.endswith("encoder.layer.0.attention.self.query.weight"))
    original_name = next(n for n in original if n.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(saved[name], original[original_name])  # the teacher was meta-learned
    json_path = tmp_path / "kd.json"
    static = main(["--method", "kd", "--teacher-checkpoint", str(teacher_dir), "--set", "student_layers=2",
                   "--output-json", str(json_path), *common])
    assert static["teacher_layers"] == 6 and static["student_layers"] == 2
    assert static["teacher_params"] > static["student_params"] and static["speedup"] > 0  # measured
    assert math.isfinite(json.loads(json_path.read_text())["eval_score"])
    capsys.readouterr()


def test_meta_adaptive_kd_alpha_beta_move_with_the_default_adaptive_lr(data_dir, minilm):
    """With the defaults (λ = inner lr = 1e-4, adaptive_lr) on real rows, the loss weights move by
    more than 2e-3 within 13 steps; an Adam step at teacher_lr = 1e-5 (the old rule) could move
    each by at most 13 x 1e-5 = 1.3e-4, i.e. the method would be MetaDistil with fixed weights."""
    cfg = DistillConfig(method="meta-adaptive-kd", data_dir=data_dir, max_train_samples=112, max_eval_samples=8,
                        max_seq_length=32, batch_size=8, epochs=1, student_layers=1, device="cpu", seed=0)
    assert cfg.adaptive_lr == DistillConfig().adaptive_lr and cfg.student_lr == DistillConfig().student_lr
    result = prepare(cfg, teacher_paths=[minilm]).engine.fit()
    alphas = [log["alpha"] for log in result.logs]
    betas = [log["beta"] for log in result.logs]
    assert len(alphas) == 13
    moved = max(max(abs(a - cfg.alpha) for a in alphas), max(abs(b - (1 - cfg.alpha)) for b in betas))
    assert moved > 2e-3, (alphas[-1], betas[-1])
