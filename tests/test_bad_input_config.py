"""Bad settings (threads, seeds, --set values, method options, compare's lists, suite grids): exit code 2,
one line naming the setting, checked before a run directory is opened."""
import pytest
import yaml
from conftest import assert_clean_error, run_cli

from earlykd import api, threads
from earlykd.distill import method_class
from earlykd.errors import EarlykdError

FAST = ["--data", "UnitTest", "--length", "32", "--arch", "fcn", "--layers", "1", "--hidden", "8", "--epochs", "1"]


def teacher(tmp_path, *extra):
    return ["teacher", *FAST, "--no-progress", *extra, "--out", tmp_path / "out"]


def compare(tmp_path, *extra):
    return ["compare", *FAST, "--no-progress", "--earliness", "0.5", *extra, "--out", tmp_path / "cmp"]


# -- 1. threads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needle", [
    (["--threads", "-2"], "got -2"),
    (["--threads", "0"], "got 0"),
    (["--set", "train.threads=-1"], "got -1"),
    (["--set", "train.threads=abc"], "'abc'"),
])
def test_threads_must_be_a_positive_integer(tmp_path, capsys, extra, needle):
    code, _, err = run_cli(capsys, *teacher(tmp_path, *extra))
    assert_clean_error(code, err, "train.threads", "positive integer", needle)
    assert not (tmp_path / "out").exists()


def test_threads_of_evaluate_predict_and_the_api(student_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", student_dir, "--threads", "-2")
    assert_clean_error(code, err, "threads must be a positive integer", "-2")
    (tmp_path / "x.csv").write_text("1,2,3,4\n")
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.csv", "--threads", "0")
    assert_clean_error(code, err, "threads must be a positive integer", "got 0")
    for bad in (-1, 0, "2", 1.5, True):
        with pytest.raises(EarlykdError, match="threads must be a positive integer"):
            threads.apply(bad)
    with pytest.raises(EarlykdError, match="threads"):
        api.evaluate(student_dir, threads=-1)
    with pytest.raises(EarlykdError, match="train.threads"):
        api.train_teacher(data="UnitTest", threads=-1, out=tmp_path / "api")
    assert not (tmp_path / "api").exists()
    assert threads.apply(None) == threads.default_threads() and threads.apply(1) == 1


# -- 2. seeds -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needles", [
    (["--seed", "-1"], ["train.seed", "non-negative integer", "-1"]),
    (["--set", "train.seed=x"], ["train.seed", "'x'"]),
    (["--set", "train.seed=99999999999"], ["train.seed", "below 2**31"]),
    (["--set", "data.split_seed=x"], ["data.split_seed", "'x'"]),
    (["--set", "data.split_seed=-1"], ["data.split_seed", "-1"]),
])
def test_seeds_must_be_non_negative_integers(tmp_path, capsys, extra, needles):
    code, _, err = run_cli(capsys, *teacher(tmp_path, *extra))
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "out").exists()


def test_student_and_compare_seeds(teacher_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.5",
                           "--seed", "-1", "--out", tmp_path / "s")
    assert_clean_error(code, err, "train.seed", "-1")
    assert not (tmp_path / "s").exists()
    for seeds, needle in (("-1", "non-negative"), ("0,0", "more than once")):
        code, _, err = run_cli(capsys, *compare(tmp_path, "--methods", "kd", "--seeds", seeds))
        assert_clean_error(code, err, "--seeds", needle)
        assert not (tmp_path / "cmp").exists()


# -- 3. other --set values ------------------------------------------------------------------------------

@pytest.mark.parametrize("item,needles", [
    ("train.checkpoint_every=x", ["train.checkpoint_every", "non-negative integer", "'x'"]),
    ("train.cv_folds=abc", ["train.cv_folds", "'abc'"]),
    ("train.cv_folds=0", ["train.cv_folds", ">= 2", "got 0"]),
    ("train.cv_folds=1", ["train.cv_folds", ">= 2", "got 1"]),
    ("ensemble.size=abc", ["ensemble.size", "positive integer", "'abc'"]),
    ("ensemble.size=0", ["ensemble.size", "positive integer"]),
    ("prefix.channels=5", ["prefix.channels", "list", "got 5"]),
    ("prefix.channels=[0,a]", ["prefix.channels", "'a'"]),
    ("prefix.channels=abc", ["prefix.channels", "'abc'"]),
    ("prefix.channels=[0,0]", ["prefix.channels", "distinct"]),
    ("prefix.channels=[-1]", ["prefix.channels", "-1"]),
    ("train.min_epochs=true", ["train.min_epochs", "non-negative integer", "True"]),
    ("train.patience=false", ["train.patience", "False"]),
])
def test_set_values_are_checked_before_the_run(tmp_path, capsys, item, needles):
    code, _, err = run_cli(capsys, *teacher(tmp_path, "--set", item))
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir())   # nor a directory named after the bad value


def test_out_must_be_a_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "teacher", *FAST, "--no-progress", "--set", "out=[1]")
    assert_clean_error(code, err, "out must be a path", "[1]")
    assert not list(tmp_path.iterdir())


def test_progress_must_be_true_or_false(tmp_path, capsys):
    code, _, err = run_cli(capsys, "teacher", *FAST, "--set", "train.progress=maybe", "--out", tmp_path / "out")
    assert_clean_error(code, err, "train.progress", "true or false", "'maybe'")
    assert not (tmp_path / "out").exists()


def test_valid_channels_and_folds_still_resolve():
    cfg = api.make_config(data="UnitTest", channels=[0], sets=["train.cv_folds=2", "train.checkpoint_every=0"])
    assert cfg["prefix"]["channels"] == [0] and cfg["train"]["cv_folds"] == 2


# -- 4. method option ranges ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,option,needle", [
    ("kd", "temperature=0", "kd option 'temperature' must be > 0"),
    ("kd", "temperature=-2", "kd option 'temperature' must be > 0"),
    ("dt2w", "gamma=0", "dt2w option 'gamma' must be > 0"),
    ("tekap", "copies=0", "tekap option 'copies' must be a positive integer"),
    ("tekap", "copies=1.5", "tekap option 'copies' must be a positive integer"),
    ("tekap", "temperature=0", "tekap option 'temperature' must be > 0"),
    ("gdpd", "samples=0", "gdpd option 'samples' must be an integer in [1, inf]"),
    ("gdpd", "start=5000", "gdpd option 'start' must be an integer in [0, 999]"),
    ("gdpd_kd", "temperature=0", "gdpd option 'temperature' must be > 0"),
    ("vid", "init_variance=0", "vid option 'init_variance' must be >"),
    ("fitnets", "weight=-1", "option 'weight' of method 'fitnets' must be a finite number >= 0 (a loss weight)"),
    ("at", "weight=.inf", "option 'weight' of method 'at' must be a finite number >= 0"),
    ("dlf", "ce_weight=-0.5", "option 'ce_weight' of method 'dlf' must be a finite number >= 0"),
    ("dkd", "beta=.nan", "option 'beta' of method 'dkd' must be a finite number"),
])
def test_method_option_ranges_before_the_run_directory(teacher_dir, tmp_path, capsys, method, option, needle):
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", method, "--earliness", "0.5",
                           "--epochs", "1", "--no-progress", "--option", option, "--out", tmp_path / "s")
    assert_clean_error(code, err, needle)
    assert not (tmp_path / "s").exists()


def test_legal_edge_options_resolve():
    assert method_class("gdpd").resolve_options({"steps": 0})["steps"] == 0   # the fused start is the hint
    assert method_class("tekap").resolve_options({"copies": 1})["copies"] == 1
    assert method_class("kd").resolve_options({"temperature": 0.5})["temperature"] == 0.5


# -- 5. compare -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needles", [
    (["--methods", "kd", "--set", "method.options.temprature=2"], ["'temprature'", "'kd'", "did you mean temperature"]),
    (["--methods", "kd", "--set", "method.options.temperature=abc"], ["'temperature'", "'abc'"]),
    (["--methods", "kd", "--set", "method.options.temperature=0"], ["kd option 'temperature'"]),
    (["--methods", "base,kd", "--set", "method.options.weight=2"], ["'weight'", "'base'"]),
    (["--methods", "base,base"], ["--methods", "base", "more than once"]),
    (["--methods", ","], ["at least one method"]),
    (["--methods", "kd", "--student-epochs", "0"], ["--student-epochs", "positive integer", "got 0"]),
    (["--methods", "kd", "--student-epochs", "-3"], ["--student-epochs", "got -3"]),
])
def test_compare_checks_methods_options_and_epochs_before_training(tmp_path, capsys, extra, needles):
    code, _, err = run_cli(capsys, *compare(tmp_path, *extra))
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "cmp").exists()


def test_compare_passes_method_options_to_the_students(tmp_path, capsys):
    code, _, err = run_cli(capsys, *compare(tmp_path, "--methods", "kd", "--set", "method.options.temperature=4",
                                            "--student-epochs", "1"))
    assert code == 0, err
    student = yaml.safe_load((tmp_path / "cmp" / "kd" / "config.yaml").read_text())
    assert student["method"] == {"name": "kd", "options": {"temperature": 4}}


# -- 6. suite grids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("grids,needles", [
    ({"temprature": [1, 2]}, ["grid option 'temprature'", "kd", "did you mean temperature"]),
    ({"copies": [1, 2]}, ["grid option 'copies'", "not an option of kd"]),
    ({"temperature": [0, 2]}, ["kd option 'temperature' must be > 0"]),
    ({"temperature": ["a"]}, ["'temperature'", "'a'"]),
    ({"temperature": 2}, ["grid option 'temperature'", "non-empty list"]),
    ({"temperature": []}, ["grid option 'temperature'", "non-empty list"]),
])
@pytest.mark.parametrize("dry", [True, False])
def test_suite_grid_options_are_checked_against_the_methods(tmp_path, capsys, grids, needles, dry):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump({"datasets": ["UnitTest"], "methods": ["kd"], "earliness": [0.5], "seeds": [0],
                                     "grids": grids}))
    code, _, err = run_cli(capsys, "bench", "--suite", suite, "--out", tmp_path / "sweep", "--no-progress",
                           *(["--dry-run"] if dry else []))
    assert_clean_error(code, err, str(suite), *needles)
    assert not (tmp_path / "sweep").exists()


def test_suite_options_name_the_file(tmp_path, capsys):
    suite = tmp_path / "opts.yaml"
    suite.write_text(yaml.safe_dump({"datasets": ["UnitTest"], "methods": ["kd"], "earliness": [0.5],
                                     "options": {"kd": {"temprature": 2}}}))
    code, _, err = run_cli(capsys, "bench", "--suite", suite, "--dry-run")
    assert_clean_error(code, err, str(suite), "'temprature'", "did you mean temperature")


def test_builtin_grids_still_expand_when_methods_are_narrowed(capsys):
    code, out, err = run_cli(capsys, "bench", "--suite", "paper-cpu", "--methods", "base", "--datasets", "GunPoint",
                             "--earliness", "0.2", "--seeds", "0", "--dry-run")
    assert code == 0, err
    assert "2 jobs" in out


def test_a_switch_given_twice_is_shown_as_typed(capsys, tmp_path):
    code, _, err = run_cli(capsys, "teacher", "--data", "UnitTest", "--no-progress", "--set", "train.progress=true",
                           "--out", tmp_path / "t")
    assert_clean_error(code, err, "given twice: --no-progress and --set train.progress=true")
    assert not (tmp_path / "t").exists()


def test_a_teacher_takes_no_prefix_settings(tmp_path, capsys):
    for item in ("prefix.channels=[0]", "prefix.earliness=0.5"):
        code, _, err = run_cli(capsys, "teacher", "--data", "UnitTest", "--set", item, "--out", tmp_path / "t")
        assert_clean_error(code, err, "a teacher sees whole series and every channel")
        assert not (tmp_path / "t").exists()
