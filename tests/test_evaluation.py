"""eval --data: dataset categories are matched to model classes by name, never by position.

COCO folders are written by edgecv.data.coco from the synthetic validation split, then their
categories renamed or renumbered the way real datasets differ from a model's class list.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import DatasetError, OptionError
from edgecv.evaluation import evaluate_model, match_classes, parse_class_map

NAMES = ["circle", "square", "triangle", "star", "cross"]  # the demo model's classes, in order
FOREIGN = ["person", "car", "dog", "cat", "bird"]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("eval_model") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=160, conf=0.05, check=False)).path


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory) -> Path:
    """12 synthetic validation scenes at 160 px as a COCO folder with the model's own category names."""
    from edgecv.data.coco import write_coco
    from edgecv.data.synthetic import ShapesDataset

    folder = tmp_path_factory.mktemp("coco") / "shapes"
    write_coco(ShapesDataset("val", 12, 160), folder, show_progress=False)
    return folder


@pytest.fixture(scope="module")
def reference(small_model, coco_folder):
    return evaluate_model(small_model, coco_folder)


def _variant(folder: Path, dest: Path, rename: dict[str, str] | None = None,
             new_ids: dict[str, int] | None = None) -> Path:
    """A copy of the COCO folder with categories renamed and/or renumbered (annotations follow the ids)."""
    shutil.copytree(folder, dest)
    gt = json.loads((dest / "annotations.json").read_text())
    old_to_new = {}
    for category in gt["categories"]:
        new_id = (new_ids or {}).get(category["name"], category["id"])
        old_to_new[category["id"]] = new_id
        category["id"], category["name"] = new_id, (rename or {}).get(category["name"], category["name"])
    gt["categories"].reverse()  # the listing order must not matter either
    for annotation in gt["annotations"]:
        annotation["category_id"] = old_to_new[annotation["category_id"]]
    (dest / "annotations.json").write_text(json.dumps(gt))
    return dest


def test_matching_names_score_per_class(reference):
    assert list(reference.per_class) == NAMES and reference.map50_95 > 0.3
    assert reference.ignored_classes == []


def test_permuted_category_ids_are_matched_by_name(small_model, coco_folder, reference, tmp_path):
    # circle gets id 5, square 4, ...: by position, every class would be scored against another's boxes
    permuted = _variant(coco_folder, tmp_path / "permuted", new_ids={n: 5 - i for i, n in enumerate(NAMES)})
    result = evaluate_model(small_model, permuted)
    assert result.map50_95 == pytest.approx(reference.map50_95, abs=1e-9)
    assert {n: round(v, 9) for n, v in result.per_class.items()} == \
        {n: round(v, 9) for n, v in reference.per_class.items()}


def test_foreign_names_are_refused_with_both_lists(small_model, coco_folder, tmp_path):
    foreign = _variant(coco_folder, tmp_path / "foreign", rename=dict(zip(NAMES, FOREIGN)))
    with pytest.raises(DatasetError) as info:
        evaluate_model(small_model, foreign)
    message = str(info.value)
    assert all(n in message for n in NAMES + FOREIGN) and "--class-map" in message
    cli = CliRunner().invoke(app, ["eval", str(small_model), "--data", str(foreign)])
    assert cli.exit_code == 2 and "match no model class" in cli.output and "Traceback" not in cli.output


def test_class_map_accepts_foreign_names(small_model, coco_folder, reference, tmp_path):
    foreign = _variant(coco_folder, tmp_path / "foreign", rename=dict(zip(NAMES, FOREIGN)),
                       new_ids={"circle": 9, "cross": 7})
    spec = ",".join(f"{f}={n}" for f, n in zip(FOREIGN, NAMES))
    result = evaluate_model(small_model, foreign, class_map=spec)
    assert result.map50_95 == pytest.approx(reference.map50_95, abs=1e-9)
    assert result.class_map == dict(zip(FOREIGN, NAMES))
    assert result.per_class["person"] == pytest.approx(reference.per_class["circle"], abs=1e-9)
    as_json = tmp_path / "map.json"
    as_json.write_text(json.dumps(dict(zip(FOREIGN, NAMES))))
    out = tmp_path / "eval.json"
    cli = CliRunner().invoke(app, ["eval", str(small_model), "--data", str(foreign), "--class-map", str(as_json),
                                   "--json", str(out)])
    assert cli.exit_code == 0, cli.output
    assert json.loads(out.read_text())["map50_95"] == pytest.approx(reference.map50_95, abs=1e-9)


def test_dataset_with_fewer_categories_scores_only_those(small_model, coco_folder, tmp_path):
    subset = _variant(coco_folder, tmp_path / "subset")
    gt = json.loads((subset / "annotations.json").read_text())
    keep = {c["id"] for c in gt["categories"] if c["name"] in ("circle", "square")}
    gt["categories"] = [c for c in gt["categories"] if c["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] in keep]
    (subset / "annotations.json").write_text(json.dumps(gt))
    result = evaluate_model(small_model, subset)
    assert set(result.per_class) == {"circle", "square"}
    assert result.ignored_classes == ["triangle", "star", "cross"]


def test_class_map_parsing_and_checks():
    assert parse_class_map("person=circle, car = square") == {"person": "circle", "car": "square"}
    assert parse_class_map(None) == {}
    for bad in ("person", "person=", "=circle"):
        with pytest.raises(OptionError, match="DATASET=MODEL"):
            parse_class_map(bad)
    with pytest.raises(OptionError, match="JSON file"):
        parse_class_map("missing_map.json")
    categories = [(1, "person"), (2, "car")]
    mapped = match_classes(["circle", "square", "star"], categories, {"person": "square", "car": "circle"})
    assert mapped == [2, 1, None]
    with pytest.raises(DatasetError, match="unknown 'bike'"):
        match_classes(["circle"], categories, {"bike": "circle"})
    with pytest.raises(DatasetError, match="both map to model class 'circle'"):
        match_classes(["circle", "square"], categories, {"person": "circle", "car": "circle"})
    with pytest.raises(DatasetError, match="unique COCO category ids"):
        match_classes(["circle", "square"], [(1, "circle"), (1, "square")])


def test_semantic_names_still_import_from_evaluation() -> None:
    import edgecv.evaluation as evaluation
    import edgecv.evaluation_semantic as semantic

    for name in ("MiouResult", "confusion_matrix", "evaluate_semantic", "evaluate_semantic_artifact",
                 "is_semantic_artifact", "miou_from_confusion", "onnx_segmenter"):
        assert getattr(evaluation, name) is getattr(semantic, name), name
