"""`--plugins` on the CLI: unknown names refused in one line before any work; `build --plugins` writes the
TensorRT-flavoured graph beside the portable one (then needs TensorRT, absent on this machine)."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.plugins import PLUGINS, parse_plugin_option
from edgecv.plugins.passes import plugin_graph_path, plugin_nodes


def test_unknown_plugin_name_is_one_line_before_export(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "yolo", "--plugins", "BatchedNMS,Fancy", "--out",
                                      str(tmp_path / "m.onnx")])
    assert result.exit_code == 2, result.output
    assert "expected plugin names from ['BatchedNMS', 'MultiLevelRoIAlign'], found ['Fancy']" in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []
    assert parse_plugin_option("all") == [] and parse_plugin_option(None) is None
    assert parse_plugin_option(" BatchedNMS ") == ["BatchedNMS"] and list(PLUGINS) == ["BatchedNMS", "MultiLevelRoIAlign"]


def test_build_with_plugins_writes_the_flavoured_graph_first(tmp_path: Path, demo_onnx: Path) -> None:
    portable = shutil.copy(demo_onnx, tmp_path / "model.onnx")
    result = CliRunner().invoke(app, ["build", str(portable), "--plugins", "all", "--out", str(tmp_path / "m.engine")])
    flavoured = plugin_graph_path(portable)
    assert flavoured == tmp_path / "model.trt.onnx" and flavoured.is_file()
    model = onnx.load(str(flavoured))
    assert [name for name, _ in plugin_nodes(model)] == ["BatchedNMS"]
    assert {p.key for p in model.metadata_props} == {p.key for p in onnx.load(str(portable)).metadata_props}
    assert result.exit_code == 2 and "TensorRT" in result.output and "Traceback" not in result.output  # no GPU here
    assert not (tmp_path / "m.engine").exists()
