"""What a sweep spends besides training (issue 10, item 6 and item 7's checkpoints): checkpoints
written only every ``--checkpoint-every`` evaluations, the teacher stage's resources and progress,
the driver counting rows without tokenising, trials reusing the tokenised splits, and the
summary's wall-time breakdown."""

from __future__ import annotations

import os

import pytest

from trainables import trainable as trainable_module

EVALS = 6  # tiny finetune run below: 2 epochs of 3 steps, an evaluation every step


class FakeTune:
    """What the trainable sees of Ray inside a trial: ``tune.report`` records each report and
    whether it carried a checkpoint (with an engine state in it)."""

    def __init__(self, monkeypatch):
        import ray
        from ray import tune

        self.reports: list[tuple[dict, bool, bool]] = []

        def report(metrics, checkpoint=None):
            state = checkpoint is not None and os.path.isfile(
                os.path.join(checkpoint.path, "engine_state.pt"))
            self.reports.append((dict(metrics), checkpoint is not None, state))

        class Context:
            def get_node_id(self):
                return "node-1"

        monkeypatch.setattr(tune, "report", report)
        monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
        monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
        monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])

    def checkpointed_evaluations(self) -> list[int]:
        return [m[trainable_module.EVALUATION] for m, ckpt, state in self.reports
                if ckpt and state and trainable_module.EVALUATION in m]


def tiny_finetune(tiny_config) -> dict:
    return {**tiny_config, "epochs": 2, "eval_steps": 1, "max_train_samples": 48, "batch_size": 16}


@pytest.mark.parametrize("every, expected", [(1, [1, 2, 3, 4, 5, 6]), (2, [2, 4, 6]), (4, [4])])
def test_checkpoints_follow_checkpoint_every(every, expected, tiny_config, monkeypatch):
    fake = FakeTune(monkeypatch)
    run = trainable_module.make_trainable("finetune", tiny_finetune(tiny_config), threads=1,
                                          checkpoint_every=every)
    run({"student_lr": 1e-4})
    evaluations = [m for m, _, _ in fake.reports if trainable_module.EVALUATION in m]
    assert len(evaluations) == EVALS
    assert fake.checkpointed_evaluations() == expected
    final = fake.reports[-1]
    assert final[0][trainable_module.FINAL] == 1 and final[1]  # the final checkpoint is always written
