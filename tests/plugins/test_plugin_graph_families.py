"""BatchedNMS on the torchvision single-stage families (SSDlite, RetinaNet, FCOS): the plugin graph with
its CPU twin vs the portable graph, per family (issue 12: >= 99.9 % of the detections matched, same
class, IoU >= 0.999). Their NMS is the same ``edgecv_nms/`` subgraph as the YOLO's, reached from
sigmoid (RetinaNet, FCOS) or softmax (SSD) scores; the tiny heads come from tests/models/tv_fixtures.py.
The two-stage families' RoI Align is covered by test_roi_align_graph.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgecv.export.fidelity import mixed_images
from edgecv.export.onnx_export import ExportOptions, export_detector
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.models.tv_single import detector_from_model
from edgecv.models.tv_weights import coco_names
from edgecv.plugins.passes import apply_plugins
from edgecv.plugins.twins import session_options
from edgecv.runtimes.preprocess import preprocess_batch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from test_plugin_graph import matched  # noqa: E402
from tv_fixtures import tiny_model  # noqa: E402

IMGSZ = 128


@pytest.mark.parametrize("kind", ["ssdlite", "retinanet", "fcos"])
def test_family_plugin_graph_matches_portable(kind: str, tmp_path: Path) -> None:
    model = tiny_model(kind) if kind != "ssdlite" else _ssdlite()
    detector = detector_from_model(model, coco_names(), name=f"{kind}-tiny", imgsz=IMGSZ)
    out = export_detector(detector, tmp_path / "model.onnx",
                          ExportOptions(imgsz=IMGSZ, conf=0.3 if kind != "ssdlite" else 0.1, check=False)).path
    portable = onnx.load(str(out))
    flavoured = apply_plugins(portable, ["BatchedNMS"])
    assert sum(n.op_type == "BatchedNMS" for n in flavoured.graph.node) == 1
    meta = ArtifactMetadata.from_json({p.key: p.value for p in portable.metadata_props}[METADATA_KEY], source=kind)
    a = ort.InferenceSession(portable.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(flavoured.SerializeToString(), session_options(["BatchedNMS"]),
                             providers=["CPUExecutionProvider"])
    name, hits, total = a.get_inputs()[0].name, 0, 0
    for image in mixed_images(IMGSZ, many=2):
        tensor, _ = preprocess_batch([image], meta)
        h, t = _matched(a.run(None, {name: tensor}), b.run(None, {name: tensor}))
        hits, total = hits + h, total + t
    assert total >= 20, f"{kind}: too few detections to judge ({total})"
    print(f"{kind}: {hits}/{total} detections matched")
    assert hits / total >= 0.999, f"{kind}: {hits}/{total} matched"


def _matched(portable: list[np.ndarray], plugin: list[np.ndarray]) -> tuple[int, int]:
    """:func:`test_plugin_graph.matched`, plus boxes equal within 1e-3 px: random heads give zero-area
    boxes (clipped at the border), whose IoU is undefined."""
    hits, total = matched(portable, plugin)
    (pn, pb, _, pc), (qn, qb, _, qc) = portable, plugin
    for b in range(pn.shape[0]):
        for i in range(int(pn[b, 0])):
            area = (pb[b, i, 2] - pb[b, i, 0]) * (pb[b, i, 3] - pb[b, i, 1])
            same = (np.abs(qb[b, : int(qn[b, 0])] - pb[b, i]).max(1) <= 1e-3) & (qc[b, : int(qn[b, 0])] == pc[b, i])
            hits += int(area <= 0 and same.any())
    return hits, total


def _ssdlite():
    """SSDlite320 (the real builder) with lively random heads, as tests/models/tv_fixtures.py makes them."""
    import torch
    from tv_fixtures import liven

    from edgecv.models.tv_single import SPECS, build

    torch.manual_seed(0)
    spec = SPECS["ssdlite320_mobilenet_v3_large"]
    return liven(build("ssdlite320_mobilenet_v3_large", 91), IMGSZ, spec.mean, spec.std, 0)
