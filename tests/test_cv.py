"""Teacher epochs by stratified k-fold cross-validation."""
import numpy as np
import pytest
import torch

from earlykd.distill import build_method
from earlykd.models import build_model
from earlykd.train.cv import choose_epoch, cross_validate_epochs, n_folds


def test_fold_count_follows_the_smallest_class():
    assert n_folds(np.array([0] * 10 + [1] * 10)) == 5
    assert n_folds(np.array([0] * 10 + [1] * 3)) == 3
    assert n_folds(np.array([0] * 10 + [1])) == 1


def test_choose_epoch_by_accuracy_then_loss():
    acc = np.array([0.5, 0.9, 0.9, 0.8, 0.9])
    loss = np.array([1.0, 0.5, 0.3, 0.2, 0.4])
    assert choose_epoch(acc, loss) == 2          # best accuracy; of the ties the lowest loss
    assert choose_epoch(acc, loss, min_epochs=3) == 4
    assert choose_epoch(acc, loss, min_epochs=9) == 4  # never past the last epoch


def test_cross_validation_is_seeded_and_picks_from_the_mean_curves():
    torch.manual_seed(0)
    x = torch.randn(30, 1, 16)
    y = torch.tensor([0, 1, 2] * 10)
    x[y == 1] += 2.0
    x[y == 2] -= 2.0
    cfg = {"epochs": 6, "batch_size": 8, "lr": 1e-2, "weight_decay": 0.0, "schedule": "constant", "seed": 3,
           "select": "acc_loss", "progress": False}
    build = lambda: build_method("base", build_model("fcn", 1, 3, 1, 8), None)  # noqa: E731
    result = cross_validate_epochs(build, x, y, cfg, torch.device("cpu"), folds=5)
    assert result.folds == 5 and len(result.mean_acc) == 6
    best = choose_epoch(np.array(result.mean_acc), np.array(result.mean_loss))
    assert result.epochs == best + 1 and result.score == (result.mean_acc[best], result.mean_loss[best])
    assert result.mean_acc[best] > 0.5  # separable classes are learnt
    again = cross_validate_epochs(build, x, y, cfg, torch.device("cpu"), folds=5)
    assert again.mean_loss == result.mean_loss  # seeded
    assert cross_validate_epochs(build, x[:4], torch.tensor([0, 0, 0, 1]), cfg, torch.device("cpu")) is None


def test_ensemble_teacher_is_one_teacher(tmp_path):
    """Two seeds and two architectures stored as one teacher: its logits are the log of the members' mean
    probabilities, features come from the lead member, and a student distils from it like from any teacher."""
    from earlykd import api, runs
    from earlykd.teacher import Teacher
    small = dict(data="UnitTest", length=32, layers=1, hidden=8, epochs=3, batch_size=8, progress=False)
    run = api.train_teacher(**small, arch="fcn,lstm", ensemble=2, out=tmp_path / "ens")
    teacher = Teacher.load(run.path)
    assert len(run.record["members"]) == 4 and run.record["combine"] == "mean"
    assert "an ensemble of 4 member(s) (the mean of their probabilities)" in (run.path / "model_card.md").read_text()
    from earlykd.bench.store import required
    row = {**{k: run.record.get(k) for k in required({"method": "teacher"})}, "method": "teacher"}
    assert row["teacher_arch"] == row["student_arch"] == "fcn+lstmx4"  # a complete teacher row in the store
    assert sorted(c["member"] for c in run.record["candidates"]) == sorted(run.record["members"])
    data = runs.load_prepared(teacher.cfg["data"])
    members = [Teacher.load(run.path / m).outputs(data, torch.device("cpu"))["test"] for m in run.record["members"]]
    mean = torch.stack([torch.softmax(m.logits, 1) for m in members]).mean(0)
    ours = teacher.outputs(data, torch.device("cpu"))["test"]
    assert torch.allclose(torch.softmax(ours.logits, 1), mean, atol=1e-6)
    assert torch.equal(ours.feature, members[0].feature)
    assert run.metrics["accuracy"] == pytest.approx((mean.argmax(1) == data.y_test).double().mean().item())
    student = api.distill(run, method="kd", earliness=0.5, epochs=2, batch_size=8, progress=False,
                          out=tmp_path / "s")
    assert student.record["teacher_id"] == teacher.id and student.record["teacher_arch"] == "fcn+lstmx4"
    assert student.record["student_arch"] == teacher.model_cfg["arch"]
    lead = run.record["members"][0]   # the record and the card name whose features feature methods distil
    assert student.record["teacher_lead"] == teacher.lead == lead and f"lead member `{lead}`" in \
        (student.path / "model_card.md").read_text()
    assert runs.evaluate_run(run.path)["accuracy"] == run.metrics["accuracy"]
    best = api.train_teacher(**small, arch="fcn,lstm", combine="best", out=tmp_path / "best")
    assert len(best.record["members"]) == 1 and best.record["members"][0] == best.record["candidates"][0]["member"]


def test_interrupted_ensemble_needs_resume_and_completes(tmp_path, monkeypatch):
    from earlykd import api, runs
    from earlykd.errors import EarlykdError
    from earlykd.train.loop import Trainer
    small = dict(data="UnitTest", length=32, arch="fcn", layers=1, hidden=8, epochs=3, batch_size=8, progress=False,
                 ensemble=2, select="acc_loss", sets=["train.checkpoint_every=1"])
    full = api.train_teacher(**small, out=tmp_path / "full")
    real, calls = Trainer._train_epoch, []

    def interrupted(self, train):
        calls.append(1)
        if len(calls) == 5:  # epoch 1 of the second member
            raise KeyboardInterrupt
        return real(self, train)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.train_teacher(**small, out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    assert runs.unfinished(tmp_path / "cut")
    with pytest.raises(EarlykdError, match="--resume"):
        api.train_teacher(**small, out=tmp_path / "cut")
    with pytest.raises(EarlykdError, match=r"other settings \(train.epochs 3 -> 4\)"):   # its first member is done
        api.train_teacher(**{**small, "epochs": 4}, out=tmp_path / "cut", resume=True)
    resumed = api.train_teacher(**small, out=tmp_path / "cut", resume=True)
    assert resumed.metrics == full.metrics and resumed.record["members"] == full.record["members"]
