"""The race benchmark's dataset writer: Ultralytics' own loader reads what it writes, offline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses / typing resolve the module by name
    spec.loader.exec_module(module)
    return module


def test_ultralytics_reads_the_written_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ultralytics")
    writer, offline = load("yolo_dataset"), load("ultralytics_offline")
    from edgecv.data.synthetic import CLASS_NAMES, ShapesDataset

    data_yaml = writer.write_yolo_dataset(tmp_path / "shapes", train=2, val=5, imgsz=(240, 320), seed=3)

    # Ultralytics' config dir was fixed when it was first imported: point its font lookup at a local copy
    # (the dataset check fetches Arial.ttf otherwise) instead of letting the audit below catch a download.
    offline.offline_config(tmp_path / "config")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    import ultralytics.utils.checks as checks
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    monkeypatch.setattr(checks, "USER_CONFIG_DIR", tmp_path / "config" / "Ultralytics")
    with offline.NetworkAudit.install() as audit:
        data = check_det_dataset(str(data_yaml))
        dataset = build_yolo_dataset(get_cfg(overrides={"imgsz": 320}), data["val"], 2, data, mode="val")
        batch = dataset[0]
    assert audit.attempts == []
    assert data["nc"] == len(CLASS_NAMES) and list(data["names"].values()) == list(CLASS_NAMES)
    assert len(dataset.labels) == 5 and batch["img"].shape[0] == 3

    truth = ShapesDataset("val", length=5, imgsz=(240, 320), seed=3)
    by_file = {Path(label["im_file"]).stem: label for label in dataset.labels}
    for index in range(5):
        sample, label = truth[index], by_file[f"{index:06d}"]
        assert label["shape"] == (240, 320)
        np.testing.assert_array_equal(label["cls"][:, 0].astype(int), sample.class_ids)
        x1, y1, x2, y2 = sample.boxes.T
        expected = np.stack([(x1 + x2) / 640, (y1 + y2) / 480, (x2 - x1) / 320, (y2 - y1) / 240], axis=1)
        np.testing.assert_allclose(label["bboxes"], expected, atol=1e-5)  # normalised cx, cy, w, h
