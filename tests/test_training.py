"""Trainer: determinism, validation-only selection (leakage), warm-up, early stopping, resume, checkpoints."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from earlykd import api, rundir, runs
from earlykd.errors import EarlykdError
from earlykd.teacher import Teacher
from earlykd.train import batch_slices, load_model
from earlykd.train.checkpoint import load_tensors, save_tensors
from earlykd.train.loop import Trainer

from conftest import interrupt_at

TINY = dict(data="UnitTest", length=32, layers=1, hidden=8, epochs=4, batch_size=8, progress=False)


def weights(run_dir):
    model, _, _ = load_model(run_dir / runs.MODEL_FILE)
    return model.state_dict()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batch_slices_fold_a_trailing_one():
    parts = batch_slices(np.arange(17), 8)
    assert [len(p) for p in parts] == [8, 9]
    assert sorted(np.concatenate(parts).tolist()) == list(range(17))
    assert [len(p) for p in batch_slices(np.arange(16), 8)] == [8, 8]


def test_last_batch_of_one_with_batch_norm(tmp_path):
    # UnitTest: 16 fit cases; batches of 15 leave one case over, which joins the previous batch
    run = api.train_teacher(**{**TINY, "arch": "fcn", "batch_size": 15}, out=tmp_path / "t")
    assert np.isfinite(run.record["history"][-1]["ce"])


def test_same_seed_same_numbers(tmp_path):
    a = api.train_teacher(**TINY, out=tmp_path / "a")
    b = api.train_teacher(**TINY, out=tmp_path / "b")
    c = api.train_teacher(**TINY, seed=1, out=tmp_path / "c")
    assert a.metrics == b.metrics and a.record["history"] == b.record["history"]
    assert same_weights(weights(a.path), weights(b.path))
    assert Teacher.load(a.path).id == Teacher.load(b.path).id   # the id digests the model file's bytes
    assert not same_weights(weights(a.path), weights(c.path))
    sa = api.distill(a.path, method="kd", earliness=0.5, epochs=3, progress=False, out=tmp_path / "sa")
    sb = api.distill(b.path, method="kd", earliness=0.5, epochs=3, progress=False, out=tmp_path / "sb")
    assert sa.metrics == sb.metrics


def test_shuffled_test_labels_change_no_selection(tmp_path, monkeypatch):
    """The test split never reaches training or selection: permuting its labels changes no checkpoint."""
    clean_t = api.train_teacher(**TINY, out=tmp_path / "clean_t")
    clean_s = api.distill(clean_t.path, method="fitnets", earliness=0.5, epochs=4, warmup=2, progress=False,
                          out=tmp_path / "clean_s")
    real_load = rundir.load_raw

    def shuffled(cfg):
        raw = real_load(cfg)
        raw.y_test = np.random.default_rng(0).permutation(raw.y_test)
        return raw

    monkeypatch.setattr(rundir, "load_raw", shuffled)
    runs._prepared.cache_clear()
    try:
        shuf_t = api.train_teacher(**TINY, out=tmp_path / "shuf_t")
        shuf_s = api.distill(shuf_t.path, method="fitnets", earliness=0.5, epochs=4, warmup=2, progress=False,
                             out=tmp_path / "shuf_s")
    finally:
        runs._prepared.cache_clear()
    for clean, shuf in ((clean_t, shuf_t), (clean_s, shuf_s)):
        assert clean.record["best_epoch"] == shuf.record["best_epoch"]
        assert clean.record["history"] == shuf.record["history"]
        assert same_weights(weights(clean.path), weights(shuf.path))
    assert clean_t.metrics != shuf_t.metrics  # the test metrics did see the shuffled labels


class Scripted(Trainer):
    """A trainer whose validation scores follow a script, to test selection rules."""
    script: list = []

    def _validate(self, val):
        return self.script[self.epoch], 0.5


def _scripted_fit(method, script, **train):
    from earlykd.distill import build_method
    from earlykd.models import build_model
    from earlykd.train import Split
    cfg = {"epochs": len(script), "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant",
           "select": "loss", "seed": 0, "min_epochs": 0, "patience": None, "progress": False, **train}
    student = build_model("fcn", 1, 2, 1, 4)
    teacher_dims = None
    if method != "base":
        from earlykd.distill import TeacherDims
        teacher_dims = TeacherDims(2, 4, 4, 8)
    distiller = build_method(method, student, teacher_dims, warmup=train.get("warmup", 0))
    Scripted.script = script
    x, y = torch.randn(8, 1, 8), torch.arange(8) % 2
    from earlykd.distill import TeacherOutputs
    teacher = TeacherOutputs(torch.randn(8, 2), torch.randn(8, 4), torch.randn(8, 8, 4)) if teacher_dims else None
    return Scripted(distiller, cfg, torch.device("cpu")).fit(Split(x, y, teacher), Split(x[:4], y[:4]))


def test_selection_waits_for_warmup():
    result = _scripted_fit("fitnets", [0.1, 0.2, 0.9, 0.8, 0.7], warmup=2)
    assert result.best_epoch == 4  # epochs 0-1 had lower loss but belong to the warm-up


def test_min_epochs_and_early_stopping():
    result = _scripted_fit("base", [0.5, 0.4, 0.3, 0.35, 0.36, 0.37, 0.1, 0.1], patience=2)
    assert result.best_epoch == 2 and result.epochs_run == 6
    result = _scripted_fit("base", [0.1, 0.4, 0.3, 0.35], min_epochs=2)
    assert result.best_epoch == 2


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    val = ["train.select=acc_loss"]  # selection on the validation split: one training run
    full = api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "full", sets=val)
    undo = interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "cut", sets=["train.checkpoint_every=1", *val])
    assert (tmp_path / "cut" / runs.STATE_FILE).exists() and not (tmp_path / "cut" / runs.RUN_FILE).exists()
    with pytest.raises(EarlykdError, match="--resume"):
        api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "cut", sets=val)
    undo()
    resumed = api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "cut", resume=True,
                                sets=["train.checkpoint_every=1", *val])
    assert resumed.record["history"] == full.record["history"]
    assert resumed.metrics == full.metrics
    assert same_weights(weights(full.path), weights(resumed.path))


def test_a_loaded_state_gives_the_optimiser_back_as_it_was(tmp_path):
    """The state file keeps parameter groups as JSON; Adam's betas come back a tuple, the state dicts equal."""
    from earlykd.config import DEFAULTS
    from earlykd.distill import build_method
    from earlykd.models import build_model
    from earlykd.train import Split

    def trainer():
        torch.manual_seed(0)
        distiller = build_method("base", build_model("fcn", 1, 2, 1, 8), None)
        cfg = {**DEFAULTS["train"], "epochs": 2, "batch_size": 4, "progress": False}
        return Trainer(distiller, cfg, torch.device("cpu"), tmp_path / "state.safetensors")

    x, y = torch.randn(8, 1, 8), torch.arange(8) % 2
    first = trainer()
    first.fit(Split(x, y), Split(x[:4], y[:4]))
    first.save_state(2)
    second = trainer()
    second.load_state(tmp_path / "state.safetensors")
    assert isinstance(second.opt.param_groups[0]["betas"], tuple)
    a, b = first.opt.state_dict(), second.opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for i in a["state"] for k in a["state"][i])


def test_checkpoint_errors(tmp_path, teacher_dir):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(EarlykdError, match="corrupt"):
        load_model(bad)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(EarlykdError, match="not an earlykd checkpoint"):
        load_model(foreign)
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    with pytest.raises(EarlykdError, match="corrupt"):
        load_model(pickled)
    with pytest.raises(EarlykdError, match="holds a 'lstm' model, expected 'fcn'"):
        load_model(teacher_dir / runs.MODEL_FILE, expect_arch="fcn")


def test_equal_tensors_and_metadata_save_to_equal_bytes(tmp_path):
    # safetensors writes its metadata map in an order that changes from call to call
    tensors, meta = {"b": torch.arange(3.0), "a": torch.ones(2, 2)}, {"kind": "teacher", "z": 1, "a": [1, 2]}
    for i in range(12):
        save_tensors(tmp_path / f"{i}.safetensors", tensors, meta)
    assert len({(tmp_path / f"{i}.safetensors").read_bytes() for i in range(12)}) == 1
    loaded, got = load_tensors(tmp_path / "0.safetensors")
    assert got == meta and all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_checkpoint_carries_architecture_and_labels(teacher_dir):
    model, meta, tensors = load_model(teacher_dir / runs.MODEL_FILE)
    assert meta["model"]["arch"] == "lstm" and meta["classes"] == ["1", "2"]
    assert meta["kind"] == "teacher" and "data.mean" in tensors


def test_cross_validated_teacher_refits_and_resumes(tmp_path, monkeypatch):
    """Default teachers: epochs by k-fold CV on the whole training split, then a refit on all of it.
    Interrupted in the refit, --resume reuses the folds (cv.json) and ends bit-identical."""
    full = api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "full")
    cv = full.record["cv"]
    assert cv["folds"] == 5 and len(cv["mean_acc"]) == 6 and full.record["epochs"] == cv["epochs"] >= 2
    assert full.record["val"]["val_acc"] == cv["mean_acc"][cv["epochs"] - 1]
    assert "val_loss" not in full.record["history"][-1]  # the refit holds nothing out: it uses train + val
    ce = [row["ce"] for row in full.record["history"]]
    eligible = range(6 // 4, len(ce))  # the refit's checkpoint: the lowest training loss, not before a quarter
    assert full.record["best_epoch"] == min(eligible, key=lambda e: (ce[e], e))
    from earlykd.train.loop import Trainer
    real = Trainer._train_epoch

    def refit_interrupted(self, train):
        if self.state_path is not None and self.epoch == 1:  # folds have no state file; the refit has
            raise KeyboardInterrupt
        return real(self, train)

    monkeypatch.setattr(Trainer, "_train_epoch", refit_interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "cut", sets=["train.checkpoint_every=1"])
    assert (tmp_path / "cut" / "cv.json").is_file() and (tmp_path / "cut" / runs.STATE_FILE).is_file()
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    resumed = api.train_teacher(**{**TINY, "epochs": 6}, out=tmp_path / "cut", resume=True,
                                sets=["train.checkpoint_every=1"])
    assert resumed.record["cv"] == cv and resumed.record["history"] == full.record["history"]
    assert same_weights(weights(full.path), weights(resumed.path))


@pytest.mark.parametrize("packed", [True, False])
def test_a_saved_state_loads_back_exactly_packed_or_one_tensor_per_name(tmp_path, monkeypatch, packed):
    """The resumable state is written as one flat tensor per dtype with a layout; it loads back to the same
    weights, optimiser state (fused and plain groups) and random state, as do files of the earlier naming.
    A layout that does not fit its tensors is refused in one line."""
    from earlykd.distill import TeacherDims, build_method
    from earlykd.models import build_model
    from earlykd.train import loop
    from earlykd.train.checkpoint import load_tensors, save_tensors
    if not packed:
        monkeypatch.setattr(loop, "pack_tensors", lambda tensors: (dict(tensors), None))
    cfg = {"lr": 1e-2, "weight_decay": 1e-5, "schedule": "cosine", "epochs": 3, "seed": 0, "batch_size": 4,
           "select": "loss", "min_epochs": 0, "patience": None, "checkpoint_every": 0, "progress": False}

    def trainer():
        torch.manual_seed(0)
        student = build_model("fcn", 1, 2, 1, 8)
        return loop.Trainer(build_method("gdpd", student, TeacherDims(2, 4, 4, 8)), cfg, torch.device("cpu"),
                            tmp_path / "state.safetensors")
    from earlykd.distill import TeacherOutputs
    g = torch.Generator().manual_seed(0)
    teacher = TeacherOutputs(torch.randn(12, 2, generator=g), torch.randn(12, 4, generator=g), torch.randn(12, 8, 4, generator=g))
    split = loop.Split(torch.randn(12, 1, 8, generator=g), torch.arange(12) % 2, teacher)
    first = trainer()
    first.fit(split, loop.Split(split.x[:4], split.y[:4]))
    rng = torch.get_rng_state()
    first.save_state(3)
    torch.manual_seed(123)
    tensors, meta = load_tensors(tmp_path / "state.safetensors")
    assert (len(tensors) <= 4) == packed
    again = trainer()
    again.load_state(tmp_path / "state.safetensors")
    a, b = first.opt.state_dict(), again.opt.state_dict()
    assert json.dumps(a["param_groups"]) == json.dumps(b["param_groups"]) and a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][p][k], b["state"][p][k]) for p in a["state"] for k in a["state"][p])
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in first.model.state_dict().items())
    assert again.epoch == 3 and again.history == first.history and torch.equal(torch.get_rng_state(), rng)
    if packed:
        meta["layout"][0][2] = [10 ** 6]
        save_tensors(tmp_path / "bad.safetensors", tensors, meta)
        with pytest.raises(EarlykdError, match="damaged"):
            trainer().load_state(tmp_path / "bad.safetensors")
