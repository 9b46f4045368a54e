"""Settings that were misread or silently ignored (exponent floats, non-finite rates, label column types, thread
counts, a student's data, an anytime run's levels, ARIA options, ensemble.combine, empty suites): exit code 2 and one
line naming the setting, before a run directory is opened; valid spellings keep working."""
import numpy as np
import pytest
import yaml
from conftest import assert_clean_error, run_cli

from earlykd import api, config, threads
from earlykd.bench.suites import load_suite
from earlykd.data.load import read_array_file
from earlykd.errors import EarlykdError

FAST = ["--data", "UnitTest", "--length", "32", "--arch", "fcn", "--layers", "1", "--hidden", "8", "--epochs", "1",
        "--no-progress"]


def early(teacher_dir, tmp_path, *extra):
    return ["early", "--teacher", teacher_dir, "--epochs", "1", "--batch-size", "8", "--no-progress", *extra,
            "--out", tmp_path / "any"]


# -- 1. exponents without a dot are floats (YAML 1.2), in --set, config files and suite files ---------------------

@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("1E5", 1e5), ("-2e-3", -2e-3), ("5e3", 5e3),
                                        ("1.5e3", 1.5e3), ("+1e2", 100.0)])
def test_exponents_parse_as_floats(text, value):
    assert config.parse_value(text) == value and isinstance(config.parse_value(text), float)


def test_exponent_floats_in_set_config_and_suite_files(tmp_path, capsys):
    code, _, err = run_cli(capsys, "teacher", *FAST, "--set", "train.lr=1e-4", "--out", tmp_path / "t")
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())["train"]["lr"] == 1e-4
    (tmp_path / "c.yaml").write_text("train: {lr: 1e-3, weight_decay: 5E-4}\n")
    cfg = config.resolve([tmp_path / "c.yaml"], sets=["data.name=UnitTest"])
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["weight_decay"] == 5e-4
    suite = tmp_path / "s.yaml"
    suite.write_text("datasets: [UnitTest]\nmethods: [base]\nearliness: [0.5]\ncommon: {train: {lr: 1e-3}}\n")
    assert load_suite(suite).common["train"]["lr"] == 1e-3
    code, _, err = run_cli(capsys, "bench", "--suite", suite, "--dry-run", "--out", tmp_path / "b")
    assert code == 0, err
    (tmp_path / "evil.yaml").write_text("train: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(EarlykdError, match="evil.yaml"):   # still safe loading
        config.load_yaml(tmp_path / "evil.yaml")


# -- 2. non-finite rates -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needle", [
    (["--lr", "inf"], "train.lr"),
    (["--set", "train.lr=.inf"], "train.lr"),
    (["--set", "train.weight_decay=.inf"], "train.weight_decay"),
])
def test_non_finite_rates_are_refused(tmp_path, capsys, extra, needle):
    code, _, err = run_cli(capsys, "teacher", *FAST, *extra, "--out", tmp_path / "t")
    assert_clean_error(code, err, needle, "finite", "inf")
    assert not (tmp_path / "t").exists()


# -- 3. data.label_column: an index, a name or null ---------------------------------------------------------------

@pytest.mark.parametrize("value", ["true", "[1]", "1.5"])
def test_label_column_must_be_an_index_a_name_or_null(tmp_path, capsys, value):
    rows = [[label, *np.round(np.random.default_rng(i).normal(size=8), 3)] for i, label in enumerate("ab" * 6)]
    csv = tmp_path / "tr.csv"
    csv.write_text("".join(",".join(map(str, row)) + "\n" for row in rows))
    code, _, err = run_cli(capsys, "teacher", "--data", csv, "--test-path", csv, "--epochs", "1", "--no-progress",
                           "--set", f"data.label_column={value}", "--out", tmp_path / "t")
    assert_clean_error(code, err, "data.label_column", "column index")
    assert not (tmp_path / "t").exists()
    with pytest.raises(EarlykdError, match="tr.csv: the label column must be"):
        read_array_file(csv, config.parse_value(value))


# -- 4. thread counts have a ceiling --------------------------------------------------------------------------------

def test_threads_above_the_ceiling_are_refused(tmp_path, capsys, teacher_dir):
    for bad in (threads.MAX_THREADS + 1, 100000):
        with pytest.raises(EarlykdError, match=f"threads must be at most {threads.MAX_THREADS}"):
            threads.apply(bad)
    code, _, err = run_cli(capsys, "teacher", *FAST, "--threads", "100000", "--out", tmp_path / "t")
    assert_clean_error(code, err, "train.threads", "at most 1024", "100000")
    assert not (tmp_path / "t").exists()
    np.save(tmp_path / "x.npy", np.zeros((2, 32)))
    for command in (["predict", teacher_dir, "--input", tmp_path / "x.npy"], ["evaluate", teacher_dir]):
        code, _, err = run_cli(capsys, *command, "--threads", "100000")
        assert_clean_error(code, err, "threads must be at most 1024", "100000")
    code, _, err = run_cli(capsys, "bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base",
                           "--threads", "100000", "--dry-run", "--out", tmp_path / "b")
    assert_clean_error(code, err, "--threads must be in [1, 1024]", "100000")


# -- 5a. a student's data is its teacher's ----------------------------------------------------------------------------

@pytest.mark.parametrize("item,needle", [("data.name=ArrowHead", "data.name = 'ArrowHead'"),
                                         ("data.length=64", "data.length = 64"),
                                         ("data.val_fraction=0.5", "data.val_fraction")])
def test_a_student_refuses_data_settings_other_than_its_teachers(teacher_dir, tmp_path, capsys, item, needle):
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--earliness", "0.4", "--epochs", "1",
                           "--no-progress", "--set", item, "--out", tmp_path / "s")
    assert_clean_error(code, err, needle, "differs from the teacher's", "teacher's data")
    assert not (tmp_path / "s").exists()


def test_a_students_own_config_trains_again(student_dir, tmp_path, capsys):
    """Its config.yaml holds the teacher's data section (length 32, not the default 100): that is no conflict."""
    code, _, err = run_cli(capsys, "distill", "--config", student_dir / "config.yaml", "--epochs", "1",
                           "--set", "data.length=32", "--out", tmp_path / "again")
    assert code == 0, err
    code, _, err = run_cli(capsys, "distill", "--config", student_dir / "config.yaml", "--epochs", "1",
                           "--set", "data.length=48", "--out", tmp_path / "other")
    assert_clean_error(code, err, "data.length = 48", "(32,")


# -- 5b-d. an anytime run's levels, ARIA options, ensemble.combine --------------------------------------------------

def test_an_anytime_run_refuses_a_single_earliness(teacher_dir, tmp_path, capsys):
    for extra in (["--set", "prefix.earliness=0.4"], ["--set", "prefix.earliness=0.4", "--levels", "0.5,1"]):
        code, _, err = run_cli(capsys, *early(teacher_dir, tmp_path, *extra))
        assert_clean_error(code, err, "prefix.earliness 0.4 is one level", "--levels")
        assert not (tmp_path / "any").exists()


@pytest.mark.parametrize("extra,needles", [
    (["--aria", "bins=3"], ["early.aria.bins is set", "--sampling aria"]),
    (["--set", "early.aria.eps=0.5"], ["early.aria.eps is set", "--sampling aria"]),
    (["--set", "early.aria.bins=abc"], ["early.aria.bins must be a positive integer", "'abc'"]),
    (["--sampling", "aria", "--aria", "bins=true"], ["early.aria.bins must be a positive integer", "True"]),
])
def test_aria_options_are_checked_and_need_aria_sampling(teacher_dir, tmp_path, capsys, extra, needles):
    code, _, err = run_cli(capsys, *early(teacher_dir, tmp_path, "--levels", "0.5,1", *extra))
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "any").exists()


def test_aria_settings_other_than_the_defaults_need_aria_sampling():
    with pytest.raises(EarlykdError, match="early.aria.clusters is set but early.sampling is uniform"):
        api.make_config(data="UnitTest", sets=["early.aria.clusters=2"])
    cfg = api.make_config(data="UnitTest", sets=["early.aria.bins=10"])          # the default value: nothing ignored
    assert cfg["early"]["aria"]["bins"] == 10
    cfg = api.make_config(data="UnitTest", sets=["early.sampling=aria", "early.aria.bins=3"])
    assert cfg["early"]["aria"]["bins"] == 3


@pytest.mark.parametrize("value,shown", [("nope", "'nope'"), ("7", "7")])
def test_ensemble_combine_is_checked_for_a_single_teacher(tmp_path, capsys, value, shown):
    code, _, err = run_cli(capsys, "teacher", *FAST, "--set", f"ensemble.combine={value}", "--out", tmp_path / "t")
    assert_clean_error(code, err, "ensemble.combine must be mean or best", shown)
    assert not (tmp_path / "t").exists()


# -- 6. a suite file names its datasets and methods ------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("", "must name its datasets"),
    ("name: mine\n", "must name its datasets"),
    ("datasets: [UnitTest]\n", "must name its methods"),
    ("methods: [base]\nearliness: [0.5]\n", "must name its datasets"),
    ("datasets: null\nmethods: [base]\n", "must name its datasets"),
])
def test_a_suite_file_must_name_datasets_and_methods(tmp_path, capsys, text, needle):
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    code, _, err = run_cli(capsys, "bench", "--suite", suite, "--dry-run", "--out", tmp_path / "b")
    assert_clean_error(code, err, str(suite), needle, "[all]")
    assert not (tmp_path / "b").exists()


def test_a_suite_file_may_name_all_datasets(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("datasets: [all]\nmethods: [base]\nearliness: [0.5]\n")
    assert load_suite(suite).datasets is None   # every dataset of --archive, else the bundled ones
    code, out, err = run_cli(capsys, "bench", "--suite", suite, "--dry-run", "--out", tmp_path / "b")
    assert code == 0 and "base-GunPoint" in out and "base-ArrowHead" in out, err


def test_an_architecture_list_in_yaml_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "teacher", "--data", "UnitTest", "--epochs", "1", "--set", "model.arch=[fcn,lstm]",
                           "--out", tmp_path / "t")
    assert_clean_error(code, err, "model.arch", "separated by commas", "['fcn', 'lstm']")
    assert not (tmp_path / "t").exists()
