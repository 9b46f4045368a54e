"""Batch-norm statistics per checkpoint (models.levelnorm): a batch updates only its level's row, evaluation
at a level reads that row, refitted rows equal each level's batch statistics, and checkpoints keep them."""
from __future__ import annotations

import torch
from torch import nn

from earlykd.models import build_model, fit_level_stats, set_level, use_level_norm
from earlykd.models.levelnorm import LevelBatchNorm, level_norms
from earlykd.train.checkpoint import load_model, save_model


def views(levels: int = 3, cases: int = 12) -> list[torch.Tensor]:
    """Prefixes of growing length whose scale grows with the level, as in a series that builds up."""
    g = torch.Generator().manual_seed(0)
    return [(k + 1) * torch.randn(cases, 2, 10 * (k + 1), generator=g) + k for k in range(levels)]


def test_every_batch_norm_is_replaced_and_recorded_in_the_spec():
    model = use_level_norm(build_model("fcn", 2, 3, 2, 8), 4)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert len(level_norms(model)) == 2 and all(m.running_mean.shape == (4, m.weight.numel()) for m in level_norms(model))
    assert model.spec()["norm_levels"] == 4
    lstm = use_level_norm(build_model("lstm", 2, 3, 1, 8), 4)   # nothing to replace
    assert "norm_levels" not in lstm.spec()


def test_a_training_batch_updates_only_its_level_and_evaluation_reads_that_level():
    torch.manual_seed(0)
    model = use_level_norm(build_model("fcn", 2, 3, 1, 8), 3)
    norm = level_norms(model)[0]
    before = norm.running_mean.clone()
    set_level(model, 1)
    model.train()(views()[1])
    changed = (norm.running_mean != before).any(1)
    assert changed.tolist() == [False, True, False]
    x = views()[2]
    outs = []
    for k in range(3):
        set_level(model, k)
        outs.append(model.eval()(x).logits)
    assert torch.equal(outs[0], outs[2]) and not torch.allclose(outs[0], outs[1])


def test_one_level_is_batch_norm():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    level = LevelBatchNorm.of(bn, 1)
    x = torch.randn(6, 4, 9)
    assert torch.allclose(level.train()(x), bn.train()(x), atol=1e-6)
    assert torch.allclose(level.running_mean[0], bn.running_mean) and torch.allclose(level.running_var[0], bn.running_var)
    assert torch.allclose(level.eval()(x), bn.eval()(x), atol=1e-6)


def test_refitted_statistics_are_each_levels_batch_statistics():
    """After the refit, evaluation at level k gives what training mode gives on level k's whole split (up to
    the unbiased variance that running statistics keep, n / (n - 1) with n = 120 here), and not what another
    level's statistics give."""
    torch.manual_seed(0)
    model = use_level_norm(build_model("fcn", 2, 3, 2, 8), 3)
    xs = views()
    fit_level_stats(model, xs)
    for k, x in enumerate(xs):
        set_level(model, k)
        with torch.no_grad():
            batch = model.train()(x).logits
            running = model.eval()(x).logits
        assert torch.allclose(batch, running, rtol=1e-2, atol=1e-3), k
        set_level(model, (k + 1) % 3)
        with torch.no_grad():
            assert not torch.allclose(batch, model(x).logits, rtol=1e-1, atol=1e-2)
    chunked = use_level_norm(build_model("fcn", 2, 3, 2, 8), 3)
    chunked.load_state_dict(model.state_dict())
    fit_level_stats(chunked, xs, chunk=6)   # two equal chunks: the first norm's mean of their means is the mean
    first, first_chunked = level_norms(model)[0], level_norms(chunked)[0]
    assert torch.allclose(first.running_mean, first_chunked.running_mean, atol=1e-5)


def test_a_checkpoint_keeps_the_statistics_of_every_level(tmp_path):
    torch.manual_seed(0)
    model = use_level_norm(build_model("fcn", 2, 3, 2, 8), 3)
    fit_level_stats(model, views())
    save_model(tmp_path / "m.safetensors", model, {"kind": "test"})
    loaded, meta, _ = load_model(tmp_path / "m.safetensors")
    assert meta["model"]["norm_levels"] == 3
    x = views()[0]
    for k in range(3):
        set_level(model, k)
        set_level(loaded, k)
        with torch.no_grad():
            assert torch.equal(model.eval()(x).logits, loaded(x).logits)


def test_batch_statistics_normalise_by_the_input_and_update_nothing():
    """Selection during training scores each level with its own batch statistics (the rows may be stale)."""
    from earlykd.models.levelnorm import batch_statistics
    torch.manual_seed(0)
    model = use_level_norm(build_model("fcn", 2, 3, 2, 8), 3)
    x = views()[1]
    rows = [m.running_mean.clone() for m in level_norms(model)]
    with torch.no_grad():
        want = model.train()(x).logits
        for m, r in zip(level_norms(model), rows):
            m.running_mean.copy_(r)   # undo the training-mode update
        with batch_statistics(model.eval()):
            got = model(x).logits
        stale = model(x).logits
    assert torch.allclose(want, got, atol=1e-6) and not torch.allclose(got, stale, atol=1e-3)
    assert all(torch.equal(m.running_mean, r) for m, r in zip(level_norms(model), rows))
    assert not any(m.batch_stats for m in level_norms(model))


def test_early_runs_keep_rows_per_checkpoint_unless_switched_off(teacher_dir, tmp_path, capsys):
    from conftest import assert_clean_error, run_cli

    from earlykd.early.run import load_decider
    common = ["early", "--teacher", teacher_dir, "--levels", "0.5", "--mode", "truncate", "--arch", "fcn",
              "--layers", "1", "--hidden", "4", "--epochs", "1", "--batch-size", "8", "--no-progress"]
    specs = {}
    for name, extra in (("rows", []), ("one", ["--set", "early.level_norm=false"])):
        code, _, err = run_cli(capsys, *common, *extra, "--out", tmp_path / name)
        assert code == 0, err
        specs[name] = load_decider(tmp_path / name).student.spec()
    assert specs["rows"]["norm_levels"] == 2 and "norm_levels" not in specs["one"]
    code, _, err = run_cli(capsys, *common, "--set", "early.level_norm=3", "--out", tmp_path / "bad")
    assert_clean_error(code, err, "early.level_norm")


def test_late_checkpoints_keep_their_accuracy():
    """Four classes that show only from the fifth sample on: every checkpoint from the second on sees them. With
    one running average for all levels, this student fell to 0.77 accuracy at the last two checkpoints
    (0.98 at the second); with rows per checkpoint it keeps them."""
    import earlykd
    from test_elects import series
    X, y, _ = series("late", 200)
    est = earlykd.EarlyClassifier(method="base", policy="threshold", hidden=16, layers=1, epochs=100,
                                  teacher_epochs=1, batch_size=16, levels=[0.125, 0.25, 0.5, 0.75, 1.0], length=32,
                                  threads=1).fit(X, y)
    Xt, yt, _ = series("late", 48, seed=1)
    accs = [float((est.decider_.logits(list(Xt), k).argmax(1) == yt).mean()) for k in range(5)]
    assert min(accs[1:]) >= 0.9 and accs[-1] >= 0.95, accs
