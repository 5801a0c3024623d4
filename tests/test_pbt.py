"""Population-based training (``--scheduler pbt``): an engine state restored under a perturbed
config trains with the new hyperparameters (no Ray), and one tiny real PBT sweep read by several
assertions (an exploit happened, MLflow has the schedule, the exploited trial continued from the
donor's state, the summary and the schedule figure)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from trainables.config import DistillConfig
from trainables.experiment import prepare
from trainables.losses import kd_loss
from trainables.methods.base import model_inputs
from trainables.optim import _linear_schedule


def _cfg(data_dir, teacher, **kw) -> DistillConfig:
    base = dict(task="sst2", data_dir=data_dir, teacher=teacher, max_train_samples=48, max_eval_samples=16,
                max_seq_length=32, batch_size=16, epochs=2, student_layers=1, seed=3, device="cpu",
                lr_warmup_ratio=0.5, weight_decay=0.0, max_grad_norm=0.0)
    base.update(kw)
    return DistillConfig(**base)


# ---- the engine restored under a new config (what an exploit does) ------------------------------

def test_a_restored_state_trains_with_the_new_lr_alpha_and_temperature(data_dir, tiny_bert, tmp_path):
    old = _cfg(data_dir, tiny_bert, method="kd", student_lr=1e-3, alpha=0.2, temperature=2.0)
    first = prepare(old, teacher_paths=[tiny_bert]).engine
    saved = []

    def report(metrics, save_checkpoint):
        if not saved:
            save_checkpoint(str(tmp_path / "ckpt"))
            saved.append(metrics["step"])

    first.fit(report=report)
    step0 = saved[0]
    state = torch.load(str(tmp_path / "ckpt" / "engine_state.pt"), weights_only=True)

    new = dataclass_replace(old, student_lr=3e-4, alpha=0.9, temperature=3.0)
    engine = prepare(new, teacher_paths=[tiny_bert]).engine
    engine.load_checkpoint(str(tmp_path / "ckpt"))
    opt = engine.method.student_opt
    factor = _linear_schedule(int(new.lr_warmup_ratio * engine.total_steps), engine.total_steps)(step0)
    # the schedule keeps its position and takes the new base lr; weights and moments are the checkpoint's
    assert engine.step == step0 and opt.scheduler.last_epoch == step0
    assert opt.scheduler.base_lrs == [3e-4] * len(opt.optimizer.param_groups)
    assert all(math.isclose(g["lr"], 3e-4 * factor) for g in opt.optimizer.param_groups)
    saved_lr = state["student_opt"]["optimizer"]["param_groups"][0]["lr"]
    assert math.isclose(saved_lr, 1e-3 * factor)  # the checkpoint's own lr, which must not be used
    for name, p in engine.method.student.state_dict().items():
        assert torch.equal(p, state["student"][name]), name

    # the next step: loss with the new alpha and T, AdamW step at the new lr from the restored moments
    batch = engine._prepare(next(iter(engine.loaders.train)))
    teacher_logits = engine.method.mean_logits(engine.method.teacher_outputs(batch))
    clone = copy.deepcopy(engine.method.student)
    torch.manual_seed(11)
    logits = clone(**model_inputs(batch, clone)).logits
    expected = kd_loss(logits, teacher_logits, batch["labels"], alpha=0.9, temperature=3.0)
    with_old = kd_loss(logits, teacher_logits, batch["labels"], alpha=0.2, temperature=2.0)
    expected.backward()
    before = {n: p.detach().clone() for n, p in engine.method.student.named_parameters()}
    moments = {p: {k: v.clone() for k, v in s.items()} for p, s in opt.optimizer.state.items()}
    torch.manual_seed(11)
    logs = engine.train_step(batch, None)
    assert torch.allclose(logs["loss"], expected.detach(), atol=1e-6)
    assert not torch.allclose(expected, with_old, atol=1e-3)
    lr = 3e-4 * factor
    grads = {n: p.grad for n, p in clone.named_parameters()}
    (beta1, beta2), eps = opt.optimizer.param_groups[0]["betas"], opt.optimizer.param_groups[0]["eps"]
    checked = 0
    for name, p in engine.method.student.named_parameters():
        g, s = grads[name], moments[p]
        t = float(s["step"]) + 1
        m = beta1 * s["exp_avg"] + (1 - beta1) * g
        v = beta2 * s["exp_avg_sq"] + (1 - beta2) * g * g
        want = before[name] - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
        assert torch.allclose(p.detach(), want, atol=1e-8, rtol=1e-4), name
        checked += 1
    assert checked and float(opt.scheduler.last_epoch) == step0 + 1


def test_a_learning_teacher_takes_the_new_teacher_lr(data_dir, tiny_bert, tmp_path):
    old = _cfg(data_dir, tiny_bert, method="metadistil", teacher_lr=1e-5)
    prepare(old, teacher_paths=[tiny_bert]).engine.save_checkpoint(str(tmp_path / "ckpt"))
    engine = prepare(dataclass_replace(old, teacher_lr=4e-5), teacher_paths=[tiny_bert]).engine
    engine.load_checkpoint(str(tmp_path / "ckpt"))
    assert engine.method.teacher_opt.scheduler.base_lrs[0] == 4e-5
    assert engine.method.student_opt.scheduler.base_lrs[0] == old.student_lr


def dataclass_replace(cfg: DistillConfig, **changes) -> DistillConfig:
    return DistillConfig(**{**cfg.to_dict(), **changes})


# ---- what PBT perturbs, its checks and its population (no Ray) ----------------------------------

@pytest.mark.parametrize("method,fixed,expected", [
    ("kd", {}, ["student_lr", "alpha", "temperature"]),              # no teacher_lr: kd's teacher is frozen
    ("metadistil", {}, ["student_lr", "teacher_lr", "alpha", "temperature"]),
    ("meta-adaptive-kd", {}, ["student_lr", "teacher_lr", "temperature"]),  # alpha is meta-learned
    ("kd", {"alpha": 0.5}, ["student_lr", "temperature"]),           # --set fixes it
    ("finetune", {}, ["student_lr"]),
])
def test_pbt_perturbs_the_searched_lambda_mu_alpha_t_the_method_reads(method, fixed, expected):
    from search_spaces.registry import build_space
    from tuner import pbt

    assert list(pbt.mutated(method, build_space(method, None, fixed))) == expected


def test_pbt_settings_are_checked_before_ray_starts():
    from search_spaces.registry import build_space
    from trainables.errors import UserError
    from tuner import pbt
    from tuner.spec import SweepSpec, _check_numbers

    def check(**kw):
        _check_numbers(SweepSpec(method="kd", scheduler="pbt", **kw))

    check(num_samples=4, perturbation_interval=4, checkpoint_every=2)
    for kw, message in [({"grid": {"alpha": [0.1, 0.9]}}, "--grid"), ({"num_samples": 1}, "at least 2"),
                        ({"perturbation_interval": 3, "checkpoint_every": 2}, "multiple of --checkpoint-every 2"),
                        ({"quantile_fraction": 0.7}, r"\(0, 0.5\]"), ({"perturbation_interval": 0}, ">= 1"),
                        ({"methods": ["kd", "metadistil"]}, "needs one method")]:
        with pytest.raises(UserError, match=message):
            check(**kw)
    with pytest.raises(UserError, match="searches none of them"):
        pbt.mutated("finetune", build_space("finetune", None, {"student_lr": 1e-4}))
    # a perturbed value outside its range is clipped into it; the initial population is seeded
    clip = pbt.ClipToRanges({"alpha": (0.0, 1.0), "temperature": (1.0, 10.0)})
    assert clip({"alpha": 1.2, "temperature": 0.8, "batch_size": 16}) == {"alpha": 1.0, "temperature": 1.0,
                                                                          "batch_size": 16}
    space = build_space("kd")
    first = pbt.initial_configs(space, 3, seed=5, first={"alpha": 0.5, "temperature": 2.0})
    assert first == pbt.initial_configs(space, 3, seed=5, first={"alpha": 0.5, "temperature": 2.0})
    assert first[0]["alpha"] == 0.5 and first[0]["temperature"] == 2.0 and len({c["alpha"] for c in first}) == 3
    ranges = space.searched()
    assert all(ranges["student_lr"].low <= c["student_lr"] <= ranges["student_lr"].high for c in first)


# ---- one tiny real PBT sweep -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pbt_sweep(ray_session, data_dir, tiny_bert, sweep_root, mlflow_uri):
    """kd on real SST-2 rows with the tiny teacher: a population of 2, 2 evaluations each (steps 2
    and 3), a perturbation after the first with quantile 0.5, so the worse trial (the second, on a
    tie) clones the better one at evaluation 1; the last evaluation is never a perturbation point."""
    from ray_fixtures import TINY_RUN, tiny_cli_args
    from tuner import launch

    cfg = {**TINY_RUN, "data_dir": data_dir, "teacher": tiny_bert, "cache_dir": str(sweep_root / "teacher-cache")}
    store = sweep_root / "pbt-store"
    summary = launch.main(["--method", "kd", *tiny_cli_args(cfg), "--eval-steps", "2",
                           "--scheduler", "pbt", "--num-samples", "2", "--perturbation-interval", "1",
                           "--quantile-fraction", "0.5", "--mlflow-uri", mlflow_uri, "--experiment", "test-pbt",
                           "--storage-path", str(store), "--name", "pbt", "--quiet"])
    return {"summary": summary, "dir": str(store / "pbt"), "mlflow_uri": mlflow_uri}


def test_a_pbt_sweep_exploits_and_the_clone_continues_from_the_donor_state(pbt_sweep):
    import json
    import os

    from ray.tune import ExperimentAnalysis

    trials = {t.trial_id: t for t in ExperimentAnalysis(pbt_sweep["dir"]).trials}
    assert len(trials) == 2
    # Ray's own record: one exploit at the first evaluation, the clone's config is the perturbed donor's
    with open(os.path.join(pbt_sweep["dir"], "pbt_global.txt")) as fh:
        policy = [json.loads(line) for line in fh]
    assert len(policy) == 1
    clone_id = next(i for i in trials if os.path.isfile(os.path.join(pbt_sweep["dir"], f"pbt_policy_{i}.txt")))
    donor_id = next(i for i in trials if i != clone_id)
    clone, donor = trials[clone_id], trials[donor_id]
    names = ["student_lr", "alpha", "temperature"]
    donor_config, new_config = policy[0][4], policy[0][5]
    assert {n: donor_config[n] for n in names} == {n: donor.config[n] for n in names}
    assert {n: new_config[n] for n in names} == {n: clone.config[n] for n in names} != \
        {n: donor.config[n] for n in names}
    c = clone.config
    assert 0 <= c["alpha"] <= 1 and 1 <= c["temperature"] <= 10 and 3e-5 <= c["student_lr"] <= 3e-4
    # the batch size sets the evaluations: PBT pins it to the sweep's for every trial
    assert clone.config["batch_size"] == donor.config["batch_size"] == 16
    assert clone.last_result["evaluations"] == 2 and clone.last_result["final_report"] == 1

    # the clone's schedule: its first evaluation is the donor's (the state it restored), the second its own
    summary = pbt_sweep["summary"]
    assert summary["pbt"]["exploits"] == 1 and summary["search"]["mode"] == "pbt"
    assert list(summary["pbt"]["mutated"]) == names
    schedule = next(t for t in summary["trials"] if t["trial_id"] == clone_id)["schedule"]
    assert [(s["evaluations"], s["steps"], s["trial"]) for s in schedule] == [([1, 1], [2, 2], donor_id),
                                                                             ([2, 2], [3, 3], clone_id)]
    assert all(schedule[0]["hparams"][n] == pytest.approx(donor.config[n]) for n in names)
    assert all(schedule[1]["hparams"][n] == pytest.approx(clone.config[n]) for n in names)
    donor_schedule = next(t for t in summary["trials"] if t["trial_id"] == donor_id)["schedule"]
    assert [(s["evaluations"], s["trial"]) for s in donor_schedule] == [([1, 2], donor_id)]
    from tuner.summary import format_summary

    assert f"eval 1 (in {donor_id})" in format_summary({**summary, "time": None})


def test_mlflow_has_the_schedule_and_analysis_plots_it(pbt_sweep, tmp_path):
    from mlflow.tracking import MlflowClient

    from analysis import schedule

    client = MlflowClient(pbt_sweep["mlflow_uri"])
    exp = client.get_experiment_by_name("test-pbt")
    runs = client.search_runs([exp.experiment_id], "tags.`distill.role` = 'trial'")
    assert len(runs) == 2
    clone = next(r for r in runs if "pbt_exploit" in r.data.metrics)
    alpha = [(m.step, m.value) for m in client.get_metric_history(clone.info.run_id, "hp/alpha")]
    assert [s for s, _ in alpha] == [2, 3] and alpha[0][1] != alpha[1][1]
    assert [(m.step, m.value) for m in client.get_metric_history(clone.info.run_id, "pbt_exploit")] == [(3, 1.0)]
    assert float(clone.data.params["alpha"]) == pytest.approx(alpha[0][1])  # params: the initial config
    assert alpha[1][1] == pytest.approx(float(pbt_sweep["summary"]["trials"][0 if clone.data.tags[
        "distill.trial_id"] == pbt_sweep["summary"]["trials"][0]["trial_id"] else 1]["config"]["alpha"]))

    out = schedule.main(["--mlflow-uri", pbt_sweep["mlflow_uri"], "--experiment", "test-pbt",
                         "--run-id", clone.info.run_id, "--out", str(tmp_path)])
    assert out["exploits"] == [2]
    assert out["data"]["alpha"].tolist() == [v for _, v in alpha]
    import os

    assert os.path.getsize(out["png"]) > 0 and os.path.getsize(out["pdf"]) > 0
    # without --run-id: the best scheduled trial of the sweep
    best = schedule.pick_run(schedule.Store(pbt_sweep["mlflow_uri"], "test-pbt"), sweep="pbt")
    assert best in {r.info.run_id for r in runs}


@pytest.mark.slow
def test_an_interrupted_pbt_sweep_resumes_and_records_every_evaluation_once(ray_session, tiny_config, tmp_path):
    """Ctrl-C in the middle of a PBT sweep, then --resume: the population finishes, every trial keeps
    its one MLflow run (none left RUNNING), and no evaluation is recorded twice."""
    import glob
    import json
    import signal
    import subprocess

    from mlflow.tracking import MlflowClient
    from ray.tune import ExperimentAnalysis

    from ray_fixtures import tiny_cli_args
    from store_template import empty_store
    from test_reliability import start_driver, trial_runs, wait_for
    from tuner import launch

    store, name = tmp_path / "store", "pbt-interrupted"
    mlflow_uri = empty_store(tmp_path / "mlflow.db")
    driver = start_driver(["--method", "kd", *tiny_cli_args(tiny_config), "--epochs", "4", "--eval-steps", "2",
                           "--scheduler", "pbt", "--num-samples", "2", "--perturbation-interval", "1",
                           "--quantile-fraction", "0.5", "--mlflow-uri", mlflow_uri, "--experiment", "test-pbt-resume",
                           "--storage-path", str(store), "--name", name, "--quiet"], tmp_path)
    wait_for(lambda: glob.glob(str(store / name / "*" / "checkpoint_*")), driver, "a first checkpoint")
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=180)
    assert driver.returncode == launch.INTERRUPTED_EXIT, stderr[-3000:]

    # the resume in a process of its own: Ray's synchronous PBT restored as it was pickled used to
    # leave every trial paused forever; a hang fails here instead of stalling the suite
    out = tmp_path / "resumed.json"
    resume = start_driver(["--resume", "--name", name, "--storage-path", str(store), "--quiet",
                           "--output-json", str(out)], tmp_path)
    try:
        _, stderr = resume.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        resume.kill()
        pytest.fail("the resumed PBT sweep did not finish in 300 s (paused trials never run again)")
    assert resume.returncode == 0, stderr[-3000:]
    resumed = json.loads(out.read_text())
    assert resumed["interrupted"] is False and resumed["counts"]["TERMINATED"] == 2, resumed["counts"]
    assert resumed["search"]["mode"] == "pbt" and resumed["pbt"]["exploits"] >= 0
    trials = ExperimentAnalysis(str(store / name)).trials
    assert len(trials) == 2 and all(t.last_result["evaluations"] == 6 for t in trials)
    parent, runs = trial_runs(mlflow_uri, "test-pbt-resume", name)
    assert parent.info.status == "FINISHED" and len(runs) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    client = MlflowClient(mlflow_uri)
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert steps and steps == sorted(set(steps)), steps
        evals = [m.step for m in client.get_metric_history(run.info.run_id, "eval_score")]
        assert len(evals) == 6 and evals == sorted(set(evals)), evals
    assert json.loads((store / name / "distill_sweep.json").read_text())["tracking_uri"] == mlflow_uri
