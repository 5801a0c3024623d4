"""Equal footing: what every method gets the same (teacher behaviour, rows, seeds) and the options
the papers' experiments need (soft losses, test-set scores, the selected student, baselines)."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from meta_helpers import one_thread  # noqa: F401 (autouse fixture)
from tiny_models import make_tiny_bert

from trainables.config import DistillConfig
from trainables.experiment import load_task, prepare, run
from trainables.losses import soft_loss
from trainables.models import load_classifier, load_tokenizer
from trainables.tasks import TASKS
from trainables.teacher import finetune_teacher, teacher_cache_path


def _cfg(data_dir, teacher, **kw) -> DistillConfig:
    base = dict(task="sst2", data_dir=data_dir, teacher=teacher, max_train_samples=60, max_eval_samples=32,
                max_seq_length=32, batch_size=8, epochs=1, student_layers=1, device="cpu")
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> str:
    """A tiny 'fine-tuned' teacher checkpoint: backbone and head saved together (dropout 0.1), so
    every run loads the very same teacher."""
    path = make_tiny_bert(str(tmp_path_factory.mktemp("backbone")), layers=2)
    torch.manual_seed(7)
    model = load_classifier(path, TASKS["sst2"], eager=True)
    assert model.config.hidden_dropout_prob > 0  # else the dropout test below proves nothing
    out = str(tmp_path_factory.mktemp("teacher"))
    model.save_pretrained(out)
    load_tokenizer(path).save_pretrained(out)
    return out


# ---- 1. teacher dropout is one setting, the same for every method ---------------------------------

def _first_soft_targets(data_dir, teacher, method, **kw) -> torch.Tensor:
    """The teacher's logits on the first training batch, as the method's step computes them."""
    prep = prepare(_cfg(data_dir, teacher, method=method, **kw), teacher_paths=[teacher])
    engine = prep.engine
    seen = []
    engine.method.teachers[0].register_forward_hook(lambda m, a, out: seen.append(out.logits.detach().clone()))
    batch = engine._prepare(next(iter(engine.loaders.train)))
    if engine.method.cached_teacher_outputs is not None:  # kd reads its teacher's cached outputs
        return engine.method.mean_logits(engine.method.teacher_outputs(batch))
    quiz = engine._quiz_batches(iter(engine.loaders.quiz)) if engine.loaders.quiz is not None else None
    torch.manual_seed(0)
    engine.method.step(batch, quiz)
    return seen[0]


def test_soft_targets_of_kd_and_metadistil_are_identical_by_default(data_dir, fine_tuned):
    kd = _first_soft_targets(data_dir, fine_tuned, "kd")
    # same rows in the first batch: metadistil trains without the quiz rows, so kd must too here
    kd_same_rows = _first_soft_targets(data_dir, fine_tuned, "kd", quiz_policy="all-methods")
    live = _first_soft_targets(data_dir, fine_tuned, "kd", quiz_policy="all-methods", teacher_output_cache=False)
    meta = _first_soft_targets(data_dir, fine_tuned, "metadistil")
    torch.testing.assert_close(meta, live, rtol=0, atol=0)  # the same teacher, the same attention kernel
    torch.testing.assert_close(meta, kd_same_rows, rtol=0, atol=1e-5)  # cached outputs (other padding)
    assert kd.shape[0] == meta.shape[0]
    with_dropout = _first_soft_targets(data_dir, fine_tuned, "metadistil", teacher_dropout=True)
    assert (with_dropout - meta).abs().max() > 1e-3  # the setting works, so the check above can fail


# ---- 2. the data seed draws the rows; the training seed does not ----------------------------------

def test_teacher_never_sees_a_quiz_row_and_seed_reruns_share_one_teacher(data_dir, tiny_bert, tmp_path):
    stages = []

    def trainer(stage, out):  # records what the teacher stage would train on
        stages.append(stage)
        import os

        os.makedirs(out, exist_ok=True)
        return {}

    paths = set()
    for seed in (1, 2, 3):
        cfg = _cfg(data_dir, tiny_bert, method="metadistil", seed=seed, max_train_samples=300,
                   cache_dir=str(tmp_path))
        paths.add(finetune_teacher(cfg, cfg.teacher_seed, trainer=trainer))
        quiz = set(load_task(cfg)[1].quiz["idx"])
        teacher_rows = set(load_task(stages[0])[1].train["idx"])
        assert quiz and teacher_rows and not quiz & teacher_rows, seed
    assert len(paths) == 1 and len(stages) == 1  # fine-tuned once, reused by every seed
    other = _cfg(data_dir, tiny_bert, method="metadistil", data_seed=5, max_train_samples=300, cache_dir=str(tmp_path))
    assert teacher_cache_path(other, other.teacher_seed) not in paths  # other rows, other teacher


def test_training_seed_changes_order_and_init_but_not_the_rows(data_dir, tiny_bert):
    a = load_task(_cfg(data_dir, tiny_bert, method="metadistil", seed=1, max_train_samples=300))[1]
    b = load_task(_cfg(data_dir, tiny_bert, method="metadistil", seed=2, max_train_samples=300))[1]
    assert a.train["idx"] == b.train["idx"] and a.quiz["idx"] == b.quiz["idx"]
    c = load_task(_cfg(data_dir, tiny_bert, method="metadistil", data_seed=2, max_train_samples=300))[1]
    assert set(c.quiz["idx"]) != set(a.quiz["idx"])


# ---- 3. which rows train ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["finetune", "kd", "pkd", "reptile-distil"])
def test_methods_without_a_quiz_set_train_on_the_whole_file_unless_asked(data_dir, tiny_bert, method):
    meta = load_task(_cfg(data_dir, tiny_bert, method="metadistil", max_train_samples=300))[1]
    full = load_task(_cfg(data_dir, tiny_bert, method=method, max_train_samples=300))[1]
    assert len(full.train) == 300
    assert set(full.train["idx"]) == set(meta.train["idx"]) | set(meta.quiz["idx"])
    equal = load_task(_cfg(data_dir, tiny_bert, method=method, max_train_samples=300,
                           quiz_policy="all-methods"))[1]
    assert equal.train["idx"] == meta.train["idx"]


# ---- soft losses ----------------------------------------------------------------------------------

def test_mse_prob_is_t2_times_the_mse_of_softened_probabilities():
    s = torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -2.0]])
    t = torch.tensor([[0.5, 0.0, 0.0], [3.0, -1.0, 1.0]])
    T = 4.0
    p_s, p_t = torch.softmax(s / T, -1), torch.softmax(t / T, -1)
    expected = float(((p_s - p_t) ** 2).sum()) / 6 * T * T
    assert float(soft_loss(s, t, T, "mse_prob")) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["kl", "mse_prob"])
def test_temperature_changes_the_soft_loss_and_its_gradient(kind):
    """A temperature study is not flat for these losses (``mse`` on logits ignores T)."""
    s = torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -2.0]], requires_grad=True)
    t = torch.tensor([[0.5, 0.0, 0.0], [3.0, -1.0, 1.0]])
    grads = [torch.autograd.grad(soft_loss(s, t, T, kind), s)[0] for T in (1.0, 2.0, 8.0)]
    assert not torch.allclose(grads[0], grads[1]) and not torch.allclose(grads[1], grads[2])


# ---- test-set scores and the selected student ------------------------------------------------------

def test_labelled_test_split_is_scored_once_for_the_selected_student(data_dir, tiny_bert, tmp_path):
    cfg = _cfg(data_dir, tiny_bert, task="gad", method="kd", eval_steps=2, max_train_samples=40,
               teacher_checkpoint=None, select="final", output_dir=str(tmp_path / "final"), student_lr=1e-3)
    prep_data = load_task(cfg)[1]
    assert prep_data.test is not None and len(prep_data.test) == 32  # capped like dev
    assert load_task(_cfg(data_dir, tiny_bert, method="kd"))[1].test is None  # GLUE: no test labels
    summary = run(cfg)
    history = summary["history"]
    assert len(history) >= 3
    assert summary["select"] == "final" and summary["eval_score"] == history[-1]["eval_score"]
    assert {"test_f1", "test_accuracy", "test_score"} <= set(summary)
    # the saved student is the one scored: evaluate it again on test
    from trainables.evaluation import evaluate
    from trainables.models import load_classifier as load

    prep = prepare(cfg)
    saved = load(str(tmp_path / "final" / "student"), prep.task)
    again = evaluate(saved, prep.engine.loaders.test, prep.task, torch.device("cpu"), prefix="test_")
    assert again["test_score"] == pytest.approx(summary["test_score"], abs=1e-9)
    best = run(cfg.replace(select="best-dev", output_dir=str(tmp_path / "best")))
    assert best["eval_score"] == max(h["eval_score"] for h in best["history"])


# ---- ReptileDistil's options ----------------------------------------------------------------------

def test_reptile_map_embeddings_off_pulls_encoder_layers_only(tmp_path):
    from meta_helpers import make_method, random_batch, tiny_classifier

    student, teacher = tiny_classifier(tmp_path, "s", layers=1, seed=1), tiny_classifier(tmp_path, "t", seed=2)
    before = copy.deepcopy(teacher)
    method = make_method("reptile-distil", student, [teacher], reptile_map_embeddings=False, teacher_lr=0.5,
                         update_strategy="skip")
    method.step(random_batch(torch.Generator().manual_seed(0)))
    moved = {n for (n, p), q in zip(teacher.named_parameters(), before.parameters()) if not torch.equal(p, q)}
    assert moved and all(n.startswith("bert.encoder.layer.1.") for n in moved), sorted(moved)


def test_reptile_baseline_trial_is_the_papers_setting():
    from search_spaces.registry import build_space
    from tuner.ray_tuner import default_point

    assert DistillConfig().update_strategy == "skip"
    space = build_space("reptile-distil")
    prep = types.SimpleNamespace(spec=types.SimpleNamespace(method="reptile-distil"), space=space,
                                 base=DistillConfig(method="reptile-distil").to_dict())
    point = default_point(prep)
    assert point["temperature"] == 5.0 and point["alpha"] == 0.5 and point["update_strategy"] == "skip"
    kd = types.SimpleNamespace(spec=types.SimpleNamespace(method="kd"), space=build_space("kd"),
                               base=DistillConfig().to_dict())
    assert default_point(kd)["temperature"] == DistillConfig().temperature


@pytest.mark.parametrize("method", ["kd", "pkd", "metadistil", "meta-adaptive-kd", "reptile-distil"])
def test_batch_size_is_searched_for_every_distillation_method(method):
    from search_spaces.registry import build_space

    searched = build_space(method).searched()
    assert list(searched["batch_size"].choices) == [8, 16, 32, 64]
    extra = {"metadistil": "inner_update", "meta-adaptive-kd": "adaptive_lr"}.get(method)
    assert extra is None or extra in searched


# ---- every CLI sets the data options ----------------------------------------------------------------

@pytest.mark.parametrize("cli", ["trainables.run", "tuner.launch", "analysis.sensitivity"])
def test_every_cli_sets_quiz_fraction_policy_data_seed_and_select(cli):
    import importlib

    from trainables.run import config_from_args

    module = importlib.import_module(cli)
    argv = ["--quiz-fraction", "0.2", "--quiz-policy", "all-methods", "--data-seed", "7", "--select", "final"]
    if cli == "analysis.sensitivity":
        argv += ["--study", "temperature"]
    args = module.build_parser().parse_args(argv)
    cfg = config_from_args(args, method="kd")
    assert (cfg.quiz_fraction, cfg.quiz_policy, cfg.data_seed, cfg.select) == (0.2, "all-methods", 7, "final")
    if cli == "tuner.launch":
        spec = module.spec_from_args(module.build_parser().parse_args([*argv, "--method", "kd"]))
        assert (spec.config["quiz_fraction"], spec.config["data_seed"]) == (0.2, 7)
