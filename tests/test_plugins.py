"""Plugins: another installed package's entry points fill earlykd's registries (methods, policies, architectures,
data sources), and a broken one is named in one line."""
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from earlykd import plugins
from earlykd.errors import EarlykdError

METHOD = '''
from earlykd.distill import Distiller, register


@register
class ToyPlugin(Distiller):
    name = "toy_plugin"
    description = "a plugin's method: cross-entropy alone"
    defaults = {}
    needs_teacher = False

    def distill_losses(self, out, batch, epoch):
        return {}
'''

SOURCE = '''
import numpy as np

from earlykd.data import RawData, register_source


@register_source("toy_plugin_source", lambda cfg: str(cfg["name"]).startswith("toy:"))
def load(cfg):
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(1, 12)) for _ in range(20)]
    y = np.array(["a", "b"] * 10)
    return RawData(cfg["name"], X, y, X[:6], y[:6], "toy:" + cfg["name"])
'''


def installed_plugin(root, entry_points: str, modules: dict[str, str]) -> dict:
    """A package on disk as pip would leave it (a dist-info with entry_points.txt): the environment that sees it."""
    for name, text in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(text))
    info = root / "toy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}


def earlykd(env, *args):
    return subprocess.run([sys.executable, "-m", "earlykd", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_an_installed_plugin_fills_the_registries_and_the_command_line_sees_it(tmp_path):
    env = installed_plugin(tmp_path, """
        [earlykd.methods]
        toy = toy_method
        [earlykd.data_sources]
        toy = toy_source
        """, {"toy_method": METHOD, "toy_source": SOURCE})
    listed = earlykd(env, "methods")
    assert listed.returncode == 0, listed.stderr
    assert "toy_plugin" in listed.stdout and "cross-entropy alone" in listed.stdout
    check = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from earlykd.checks import check_method
        from earlykd.data import load_raw
        check_method("toy_plugin")
        assert load_raw({"name": "toy:x"}).source == "toy:toy:x"   # asked before the bundled catch-all
        assert load_raw({"name": "GunPoint"}).source == "aeon:GunPoint"
        print("ok")
        """)], capture_output=True, text=True, env=env, timeout=300)
    assert check.stdout.strip() == "ok", check.stderr


def test_a_broken_plugin_is_one_line_and_exit_2(tmp_path):
    env = installed_plugin(tmp_path, """
        [earlykd.methods]
        broken = toy_missing_module
        """, {})
    result = earlykd(env, "methods")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "earlykd: error: plugin 'broken' (toy_missing_module, entry point group earlykd.methods) failed to load: "
        "ModuleNotFoundError: No module named 'toy_missing_module'"]


def test_a_plugin_taking_a_built_in_name_is_refused(tmp_path, monkeypatch):
    (tmp_path / "toy_clash.py").write_text(METHOD.replace('"toy_plugin"', '"kd"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("clash", "toy_clash", plugins.GROUPS["methods"])
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point] if group == point.group else [])
    with pytest.raises(EarlykdError, match=r"^plugin 'clash' \(toy_clash, entry point group earlykd.methods\): "
                                           r"a method named 'kd' is already registered \(earlykd.distill.kd\)"):
        plugins.load_plugins(point.group)
