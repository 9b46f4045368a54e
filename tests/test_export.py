"""`earlykd export RUN --format onnx`: onnxruntime matches torch within 1e-5 for every architecture and the
anytime student; the sidecar holds the preprocessing; errors are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli

from earlykd import cli
from earlykd.models import ARCHITECTURES, build_model, set_level

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'earlykd[export]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'earlykd[export]')")

TOLERANCE = 1e-5


def torch_outputs(model, x: torch.Tensor, checkpoint: int | None = None) -> list[np.ndarray]:
    if checkpoint is not None:
        set_level(model, checkpoint)
    with torch.no_grad():
        logits = model.eval()(x).logits
    return [logits.numpy(), torch.softmax(logits, -1).numpy()]


def onnx_outputs(path, x: torch.Tensor, checkpoint: int | None = None) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"series": x.numpy()} | ({} if checkpoint is None else {"checkpoint": np.array(checkpoint)})
    return session.run(["logits", "probabilities"], feed)


def assert_parity(model, path, x, checkpoint: int | None = None):
    for want, got in zip(torch_outputs(model, x, checkpoint), onnx_outputs(path, x, checkpoint)):
        assert np.abs(want - got).max() <= TOLERANCE


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_matches_torch_with_dynamic_batch_and_time(arch, tmp_path):
    """Untrained models with non-trivial batch-norm statistics, three channels, any batch and length."""
    from earlykd.export import export_model
    torch.manual_seed(0)
    model = build_model(arch, 3, 4, 2, 8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = export_model(model, tmp_path / f"{arch}.onnx", 3, 40, dynamic_steps=True)
    for shape in [(1, 3, 40), (7, 3, 40), (2, 3, 13), (1, 3, 100)]:
        assert_parity(model, path, torch.randn(*shape))


@pytest.fixture(scope="module")
def student_runs(teacher_dir, tmp_path_factory):
    """One briefly trained student run per architecture, modes alternating."""
    root = tmp_path_factory.mktemp("export")
    runs = {}
    for i, arch in enumerate(sorted(ARCHITECTURES)):
        mode = "truncate" if i % 2 == 0 else "stretch"
        path = root / arch
        code = cli.main(["distill", "--teacher", str(teacher_dir), "--method", "kd", "--earliness", "0.4",
                         "--mode", mode, "--arch", arch, "--layers", "1", "--hidden", "4", "--epochs", "1",
                         "--batch-size", "8", "--no-progress", "--out", str(path)])
        assert code == 0
        runs[arch] = path
    return runs


def test_student_runs_export_through_the_cli(student_runs, capsys, tmp_path):
    from earlykd import runs
    from earlykd.train import load_model
    for arch, run in student_runs.items():
        out = tmp_path / f"{arch}.onnx"
        code, stdout, err = run_cli(capsys, "export", run, "--format", "onnx", "--out", out)
        assert code == 0, err
        assert "max |onnxruntime - torch|" in stdout and f"written: {out}" in err
        cfg, _ = runs.read_run(run)
        model, meta, _ = load_model(run / "model.safetensors")
        x = runs.load_prepared(cfg["data"]).view("test", **cfg["prefix"])  # the preprocessed test split
        assert_parity(model, out, x)
        sidecar = json.loads(out.with_suffix(".json").read_text())
        stored = json.loads(onnx.load(str(out)).metadata_props[0].value)
        assert stored == {k: v for k, v in sidecar.items() if k != "parity_max_abs_diff"}
        assert sidecar["classes"] == meta["classes"] and sidecar["earliness"] == 0.4
        assert sidecar["reference_length"] == 24 and sidecar["length"] == 32
        assert sidecar["samples"] == {"0.4": 10} and len(sidecar["mean"]) == len(sidecar["std"]) == 1
        time_axis = onnx_input_shape(out)[2]
        if cfg["prefix"]["mode"] == "truncate":
            assert time_axis == "steps" and sidecar["steps"] == {"0.4": 13}
        else:
            assert time_axis == 32 and sidecar["steps"] == {"0.4": 32}


def onnx_input_shape(path) -> list:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def test_anytime_student_exports_with_a_dynamic_time_axis(teacher_dir, tmp_path, capsys):
    from earlykd import runs
    from earlykd.early.run import load_decider
    run = tmp_path / "anytime"
    assert cli.main(["early", "--teacher", str(teacher_dir), "--method", "kd", "--levels", "0.25,0.5",
                     "--mode", "truncate", "--arch", "fcn", "--layers", "1", "--hidden", "4", "--epochs", "1",
                     "--batch-size", "8", "--no-progress", "--out", str(run)]) == 0
    code, out, err = run_cli(capsys, "export", run)
    assert code == 0, err
    assert "and 'checkpoint' (an int64 scalar" in out   # the summary names both inputs
    path = run / "model.onnx"
    assert onnx_input_shape(path) == ["batch", 1, "steps"]
    decider = load_decider(run)
    cfg, _ = runs.read_run(run)
    data = runs.load_prepared(cfg["data"])
    assert decider.student.norm_levels == 3   # batch-norm statistics per checkpoint, picked by a graph input
    outputs = []
    for k, e in enumerate(decider.levels):  # every checkpoint's prefix length through one graph
        assert_parity(decider.student, path, data.view("test", e, "truncate"), k)
        outputs.append(onnx_outputs(path, data.view("test", 1.0, "truncate"), k)[0])
    assert np.abs(outputs[0] - outputs[-1]).max() > 1e-4   # the checkpoint input reaches the statistics
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["checkpoint_input"]["name"] == "checkpoint"
    assert sidecar["kind"] == "anytime" and sidecar["earliness"] == [0.25, 0.5, 1.0]
    assert sidecar["steps"] == {"0.25": 8, "0.5": 16, "1.0": 32}
    record = json.loads((run / "run.json").read_text())
    assert sidecar["policies"] == json.loads((run / "decide.json").read_text())
    assert sidecar["policies"]["default"] == record["default_policy"] and set(sidecar["policies"]["policies"]) == \
        set(record["policies_val"])


def test_export_errors_are_one_line(teacher_dir, student_runs, tmp_path, capsys, monkeypatch):
    run = student_runs["fcn"]
    cases = [
        (["export", teacher_dir], ["teacher run", "export takes a student"]),
        (["export", tmp_path / "missing"], ["not found"]),
        (["export", run, "--format", "onxx"], ["unknown export format", "onnx"]),
        (["export", run, "--out", tmp_path / "no" / "m.onnx"], ["does not exist"]),
    ]
    for args, needles in cases:
        code, _, err = run_cli(capsys, *args)
        assert_clean_error(code, err, *needles)
    mine = tmp_path / "user.json"   # a file of the user's where the sidecar would go is left alone
    mine.write_text('{"mine": 1}')
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "user.onnx")
    assert_clean_error(code, err, "user.json exists and is not an earlykd export's sidecar")
    assert mine.read_text() == '{"mine": 1}' and not (tmp_path / "user.onnx").exists()

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 is not supported.\nmore")
    monkeypatch.setattr(torch.onnx, "export", unsupported)
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "m.onnx")
    assert_clean_error(code, err, "ONNX export of the 'fcn' model failed", "aten::fancy")
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".m.onnx*"))


def test_missing_onnx_package_is_one_line(student_runs, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    code, _, err = run_cli(capsys, "export", student_runs["fcn"])
    assert_clean_error(code, err, "needs the 'onnx' package", "earlykd[export]")


def test_export_has_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "--help"])
    assert info.value.code == 0 and "usage: earlykd export" in capsys.readouterr().out
