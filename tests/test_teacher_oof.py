"""Out-of-fold logits of a cross-validated teacher, and DLF's option to use them as design points."""
import numpy as np
import pytest
import torch

from earlykd.config import DEFAULTS
from earlykd.distill import Batch, TeacherOutputs, build_method
from earlykd.distill.base import member_targets
from earlykd.errors import EarlykdError
from earlykd.models import build_model
from earlykd.train import Split, Trainer
from earlykd.train.cv import cross_validate_epochs
from earlykd.train.loop import predict_logits


def test_each_case_gets_the_logits_of_the_fold_that_held_it_out_at_the_chosen_epoch():
    from sklearn.model_selection import StratifiedKFold
    g = torch.Generator().manual_seed(0)
    y = torch.arange(30) % 3
    x = torch.randn(30, 1, 12, generator=g) + y[:, None, None].float()
    cfg = {**DEFAULTS["train"], "epochs": 4, "batch_size": 8, "seed": 5, "progress": False, "select": "acc_loss",
           "min_epochs": 0}
    build = lambda: build_method("base", build_model("fcn", 1, 3, 1, 4), None)  # noqa: E731
    result = cross_validate_epochs(build, x, y, cfg, torch.device("cpu"), folds=3)
    assert result.oof.shape == (30, 3)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=5).split(np.zeros(30), y.numpy())
    for fold, (fit, held) in enumerate(folds):   # the same fold, trained for the chosen number of epochs
        torch.manual_seed(5 + fold)
        model = build()
        Trainer(model, {**cfg, "epochs": result.epochs, "patience": None, "checkpoint_every": 0}, torch.device("cpu")
                ).fit(Split(x[fit], y[fit]), Split(x[held][:0], y[held][:0]))
        assert np.allclose(result.oof[held], predict_logits(model, x[held]).numpy(), atol=1e-6)


def test_a_cross_validated_teacher_gives_each_member_out_of_fold_logits_for_train_and_val(teacher_dir):
    from earlykd import runs
    from earlykd.teacher import Teacher
    teacher = Teacher.load(teacher_dir)
    data = runs.load_prepared(teacher.cfg["data"])
    outputs = teacher.outputs(data, torch.device("cpu"))
    n_train, n_val = len(data.labels["train"]), len(data.labels["val"])
    assert outputs["train"].member_oof.shape == (n_train, 1, data.n_classes)
    assert outputs["val"].member_oof.shape == (n_val, 1, data.n_classes) and outputs["test"].member_oof is None
    assert not torch.allclose(outputs["train"].member_oof, outputs["train"].members)   # not the refit's logits


def test_dlf_reads_the_out_of_fold_logits_only_when_asked_and_says_when_they_are_missing():
    logits = torch.randn(4, 3)
    members, oof = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    with_oof = Batch(torch.zeros(4, 1, 5), torch.zeros(4, dtype=torch.long),
                     TeacherOutputs(logits, torch.zeros(4, 2), torch.zeros(4, 5, 2), members, oof))
    assert torch.equal(member_targets(with_oof, 2, "dlf", out_of_fold=True), oof)
    assert torch.equal(member_targets(with_oof, 2, "dlf"), members)
    without = Batch(with_oof.x, with_oof.y, TeacherOutputs(logits, torch.zeros(4, 2), torch.zeros(4, 5, 2), members))
    with pytest.raises(EarlykdError, match="out-of-fold logits"):
        member_targets(without, 2, "dlf", out_of_fold=True)
    with pytest.raises(EarlykdError, match="oof must be 0 or 1"):
        build_method("dlf", build_model("fcn", 1, 3, 1, 4), without.teacher.dims, {"oof": 2})
