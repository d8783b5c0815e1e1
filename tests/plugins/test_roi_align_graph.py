"""The plugin-flavoured two-stage graphs: graph.replace swaps the /edgecv_roialign/ subgraphs of real
exported Faster R-CNN / Mask R-CNN graphs (torchvision models, seeded random weights, nothing
downloaded) for edgecv::MultiLevelRoIAlign nodes; ONNX Runtime runs them with the CPU twin and they
give the portable graph's detections and masks. Plus: the kernel compiles to cubin for every claimed target."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgecv.errors import ExportError
from edgecv.export.twostage import trace_graph
from edgecv.export.twostage_fidelity import check_images
from edgecv.models.tv_twostage import IMAGENET_MEAN, IMAGENET_STD, TwoStageConfig, TwoStageGraph, seeded_random_model
from edgecv.plugins.roi_align import DOMAIN, OP_TYPE, compile_node, graph, twin

SIZE = 128
CFG = TwoStageConfig(imgsz=SIZE, max_det=20, conf=0.05, iou=0.5, pre_nms_top_n=100, post_nms_top_n=40)
#: Mask R-CNN: edgecv's MobileNetV3 builder (box + mask scopes; its two maps are both stride 32, so
#: every RoI reaches one level). Faster R-CNN: torchvision's FasterRCNN on a ResNet-18 FPN, the
#: ResNet-50 builders' four pooled levels (1/4 .. 1/32) at a fraction of the cost.
FAMILIES = {"maskrcnn_mobilenet_v3_large_fpn": ["box", "mask"], "fasterrcnn_resnet18_fpn": ["box"]}


def faster_resnet18(cfg: TwoStageConfig) -> torch.nn.Module:
    """Seeded FasterRCNN on a ResNet-18 FPN, BatchNorm statistics and head outputs conditioned as
    :func:`edgecv.models.tv_twostage.seeded_random_model` does for the builders."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    from edgecv.models.tv_twostage import enliven

    torch.manual_seed(0)
    model = FasterRCNN(resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5), num_classes=5,
                       min_size=cfg.imgsz, max_size=cfg.imgsz, image_mean=[0.0] * 3, image_std=[1.0] * 3,
                       box_score_thresh=cfg.conf, box_detections_per_img=cfg.max_det,
                       rpn_pre_nms_top_n_test=cfg.pre_nms_top_n, rpn_post_nms_top_n_test=cfg.post_nms_top_n)
    return enliven(model, cfg.imgsz)


def images() -> np.ndarray:
    """The fidelity check's synthetic scenes (+ a grey frame), RGB, ImageNet-normalised ``[N, 3, S, S]``."""
    rgb = np.stack([im[:, :, ::-1] for im in check_images(SIZE)]).astype(np.float32) / 255
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


@pytest.fixture(scope="module", params=list(FAMILIES))
def graphs(request) -> tuple[str, onnx.ModelProto, onnx.ModelProto, torch.nn.Module]:
    """``(builder, portable graph, plugin graph, torchvision model)`` of one family, batch 1."""
    model = faster_resnet18(CFG) if request.param == "fasterrcnn_resnet18_fpn" else seeded_random_model(request.param, CFG)
    portable = trace_graph(TwoStageGraph(model, CFG).eval(), 1)
    return request.param, portable, graph.replace(portable), model


def test_subgraphs_become_one_plugin_node_each(graphs) -> None:
    builder, portable, plugged, _ = graphs
    scopes = graph.find_scopes(portable)
    assert [s.name for s in scopes] == FAMILIES[builder] and not any(s.reason for s in scopes)
    four = builder == "fasterrcnn_resnet18_fpn"
    assert scopes[0].scales == ([1 / 4, 1 / 8, 1 / 16, 1 / 32] if four else [1 / 32, 1 / 32])
    levels = 4 if four else 1  # maps fed to the node: the reachable levels
    concat = [n for n in plugged.graph.node if n.name == "/edgecv_roialign/box/plugin/Concat"]
    assert len(concat) == 1 and len(concat[0].input) == levels
    nodes = [n for n in plugged.graph.node if n.op_type == OP_TYPE]
    assert len(nodes) == len(scopes) and all(n.domain == DOMAIN for n in nodes)
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert [a["output_size"] for a in attrs] == [7, 14][:len(nodes)]
    assert all(a["plugin_namespace"] == b"edgecv" and a["plugin_version"] == b"1" and a["sampling_ratio"] == 2
               and a["aligned"] == 0 for a in attrs)
    left = {n.op_type for n in plugged.graph.node}
    assert "RoiAlign" not in left and "RoiAlign" in {n.op_type for n in portable.graph.node}
    assert len(plugged.graph.node) < len(portable.graph.node)
    onnx.checker.check_model(plugged)
    assert graph.replace(plugged).SerializeToString() == plugged.SerializeToString()  # nothing left to replace


def test_plugin_graph_with_twin_matches_portable_graph(graphs) -> None:
    """>= 99.9 % of the portable graph's detections matched (same class, IoU >= 0.999), scores and
    masks within 1e-4, over the fidelity check's images."""
    builder, portable, plugged, _ = graphs
    base = ort.InferenceSession(portable.SerializeToString(), providers=["CPUExecutionProvider"])
    plug = ort.InferenceSession(plugged.SerializeToString(), twin.session_options(), providers=["CPUExecutionProvider"])
    total = matched = 0
    for image in images():
        want = base.run(None, {"images": image[None]})
        got = plug.run(None, {"images": image[None]})
        n, m = int(want[0][0, 0]), int(got[0][0, 0])
        total += n
        if not n or not m:
            continue
        iou = box_iou(want[1][0, :n], got[1][0, :m])
        same = want[3][0, :n, None] == got[3][0, None, :m]
        best = np.where(same, iou, 0).argmax(1)
        ok = np.where(same, iou, 0).max(1) >= 0.999
        matched += int(ok.sum())
        np.testing.assert_allclose(got[2][0, best[ok]], want[2][0, :n][ok], atol=1e-4)
        if len(want) == 5:
            np.testing.assert_allclose(got[4][0, best[ok]], want[4][0, :n][ok], atol=1e-4)
    assert total >= 20, f"{builder}: only {total} detections, too few to compare"
    assert matched / total >= 0.999, f"{builder}: {matched}/{total} detections matched"


def test_roi_pool_scopes_stay_portable(graphs) -> None:
    """pooler="pool" graphs keep their MaxRoiPool box subgraph (the plugin is RoI Align only); the
    mask scope, RoI Align, is still replaced."""
    builder, _, _, model = graphs
    cfg = TwoStageConfig(**{**CFG.__dict__, "pooler": "pool"})
    portable = trace_graph(TwoStageGraph(model, cfg).eval(), 1)
    scopes = graph.find_scopes(portable)
    assert scopes[0].name == "box" and scopes[0].reason.startswith("not RoI Align")
    plugged = graph.replace(portable)
    assert "MaxRoiPool" in {n.op_type for n in plugged.graph.node}
    assert [n.op_type for n in plugged.graph.node].count(OP_TYPE) == len(FAMILIES[builder]) - 1


def test_unreadable_level_map_is_one_line_error(graphs) -> None:
    """A scope whose level maps have no static H, W (here: the shapes dropped) cannot be tabled."""
    _, portable, _, _ = graphs
    scope = graph.find_scopes(portable)[0]
    with pytest.raises(ExportError, match="expected a level map"):
        graph.plugin_nodes(scope, {})


def test_shipped_tiny_mask_rcnn_takes_the_plugins(tmp_path) -> None:
    """``edgecv export maskrcnn_tiny --plugins all``: its YOLO-n backbone's C2f split once traced to
    Slice bounds computed from Shape, which left the level maps without a static H, W (the command
    failed); both scopes become plugin nodes and the CPU twin gives the portable graph's detections."""
    from typer.testing import CliRunner

    from edgecv.cli import app

    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "maskrcnn_tiny", "--imgsz", "128", "--plugins", "all", "--out",
                                      str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    plugged = onnx.load(str(out.with_suffix(".trt.onnx")))
    assert [n.name.split("/")[2] for n in plugged.graph.node if n.op_type == OP_TYPE] == ["box", "mask"]
    base = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    plug = ort.InferenceSession(plugged.SerializeToString(), twin.session_options(), providers=["CPUExecutionProvider"])
    image = np.stack([im[:, :, ::-1] for im in check_images(128)])[:1].astype(np.float32) / 255
    image = ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).astype(np.float32)
    want, got = base.run(None, {"images": image}), plug.run(None, {"images": image})
    n = int(want[0][0, 0])
    assert n > 0 and int(got[0][0, 0]) == n
    np.testing.assert_allclose(got[1][0, :n], want[1][0, :n], atol=1e-3)


@pytest.mark.parametrize("target", [87, 89, 90])
def test_kernel_compiles_to_cubin_for_claimed_targets(target: int) -> None:
    """The node's kernel (box-head attributes) compiles for sm_87 / sm_89 / sm_90 on this CPU machine;
    the record names the PTX ISA and the driver it needs."""
    (kernel,) = compile_node({"output_size": 7, "sampling_ratio": 2, "aligned": 0}, target)
    assert kernel.cubin[:4] == b"\x7fELF" and len(kernel.cubin) > 10_000
    assert kernel.target.startswith(f"sm_{target}") and f".target {kernel.target}" in kernel.ptx
    record = kernel.record()
    assert record["ptx_isa"] in kernel.ptx.split(".version ", 1)[1][:4] and record["min_driver"]
    assert kernel.shared_mem >= 0 and kernel.num_warps == 4
