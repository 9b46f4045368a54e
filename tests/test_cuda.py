"""The same runs on a GPU: teacher (CV and ensemble), every registered method, evaluate and predict.
Skipped where CUDA is absent (this project's CPU machines and CI)."""
import numpy as np
import pytest
import torch

from earlykd import api, runs
from earlykd.distill import METHODS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = dict(data="UnitTest", length=32, arch="fcn", layers=1, hidden=8, batch_size=8, progress=False, device="cuda")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return api.train_teacher(**SMALL, epochs=3, ensemble=2, out=tmp_path_factory.mktemp("cuda") / "t")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_evaluates_and_predicts_on_cuda(teacher, method, tmp_path):
    run = api.distill(teacher, method=method, earliness=0.5, epochs=2, warmup=1, out=tmp_path / method,
                      **{k: v for k, v in SMALL.items() if k != "data"})
    assert run.record["device"].startswith("cuda") and 0 <= run.metrics["auc_prc"] <= 1
    assert runs.evaluate_run(run.path, device="cuda") == pytest.approx(run.metrics, abs=1e-5)
    cfg, _ = runs.read_run(run.path)
    data = runs.load_prepared(cfg["data"])
    _, probs = api.predict(run, [s for s in data.series["test"]], full=True)
    assert np.isfinite(probs).all()
