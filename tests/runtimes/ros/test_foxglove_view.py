"""``--foxglove``: a WebSocket client written to the published Foxglove WebSocket protocol
(``foxglove.websocket.v1``, served by foxglove-sdk 0.30 as ``foxglove.sdk.v1``: JSON ``serverInfo`` / ``advertise``, client ``subscribe``, binary
``0x01 | u32 subscription id | u64 timestamp | payload`` message data) subscribes to the sink's
channels while a real stream runs, and receives image and annotation messages."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecv.runtimes import Predictor

pytest.importorskip("foxglove")
websockets = pytest.importorskip("websockets")

from edgecv.runtimes.streams.sinks.foxglove import FoxgloveView  # noqa: E402

TIMEOUT_S = 20.0
WANTED = ("/edgecv/image", "/edgecv/annotations", "/edgecv/detections", "/edgecv/stats")


async def collect(url: str, subscribed: threading.Event, want: int) -> dict[str, list[bytes]]:
    """Subscribe to every edgecv channel; return payloads per topic once each has ``want`` messages."""
    from websockets.asyncio.client import connect

    got: dict[str, list[bytes]] = {topic: [] for topic in WANTED}
    # foxglove-sdk 0.30 speaks the protocol as "foxglove.sdk.v1" (same ops and framing); older servers v1
    async with connect(url, subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"], max_size=None) as ws:
        channels: dict[int, dict] = {}
        by_subscription: dict[int, str] = {}
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and any(len(v) < want for v in got.values()):
            frame = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(frame, str):
                message = json.loads(frame)
                if message["op"] == "advertise":
                    channels.update({c["id"]: c for c in message["channels"]})
                    if all(any(c["topic"] == t for c in channels.values()) for t in WANTED):
                        subs = [{"id": i + 1, "channelId": cid} for i, cid in enumerate(channels)]
                        by_subscription = {s["id"]: channels[s["channelId"]]["topic"] for s in subs}
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
                        subscribed.set()
                continue
            assert frame[0] == 0x01  # message data
            subscription, _stamp = struct.unpack_from("<IQ", frame, 1)
            got[by_subscription[subscription]].append(bytes(frame[13:]))
        return got, channels


def test_client_receives_images_annotations_detections_and_stats(toy_artifact: Path) -> None:
    view = FoxgloveView("127.0.0.1", 0)
    subscribed = threading.Event()
    done = threading.Event()
    red = np.zeros((96, 128, 3), np.uint8)
    red[:48, :64] = (0, 0, 255)

    def frames():  # until the client is done (bounded): messages reach subscribers only
        for i in range(2000):
            if done.is_set():
                return
            yield red, 1_000.0 + i * 0.1
            time.sleep(0.01)

    def produce() -> None:
        assert subscribed.wait(TIMEOUT_S)
        with Predictor(toy_artifact) as predictor:
            predictor.stream(frames(), sinks=[view]).run()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        got, channels = asyncio.run(collect(view.url, subscribed, want=3))
    finally:
        done.set()
        producer.join(TIMEOUT_S)
        view.close()
    assert not producer.is_alive()
    schemas = {c["topic"]: c["schemaName"] for c in channels.values()}
    assert schemas["/edgecv/image"] == "foxglove.CompressedImage"
    assert schemas["/edgecv/annotations"] == "foxglove.ImageAnnotations"
    assert all(len(got[topic]) >= 3 for topic in WANTED), {k: len(v) for k, v in got.items()}
    payload = got["/edgecv/image"][0]  # protobuf: the JPEG bytes sit inside it whole
    start, end = payload.index(b"\xff\xd8\xff"), payload.rindex(b"\xff\xd9") + 2
    image = cv2.imdecode(np.frombuffer(payload[start:end], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == red.shape and abs(int(image[10, 10, 2]) - 255) < 10
    assert b"red 0." in got["/edgecv/annotations"][0]  # the label text of the red box
    detections = json.loads(got["/edgecv/detections"][0])
    assert detections["labels"] == ["red"] and detections["boxes"][0] == pytest.approx([0, 0, 64, 48], abs=1)
    stats = json.loads(got["/edgecv/stats"][-1])
    assert stats["frames"] >= 3 and stats["detections"] == 1


def test_non_loopback_bind_warns() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = FoxgloveView("0.0.0.0", 0)
    view.close()
    assert any("not loopback" in str(w.message) and "no authentication" in str(w.message) for w in caught)


def test_a_taken_port_is_an_option_error() -> None:
    from edgecv.errors import OptionError

    first = FoxgloveView("127.0.0.1", 0)
    try:
        with pytest.raises(OptionError, match="--foxglove: expected a free address"):
            FoxgloveView("127.0.0.1", first.port)
    finally:
        first.close()


def test_cli_serves_a_bag_and_exits_cleanly(toy_artifact: Path, bag_maker) -> None:
    from typer.testing import CliRunner

    from edgecv.cli import app
    from ros_bag_writer import TOPIC

    bag = bag_maker("mcap", "jpeg", 6)
    result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", str(bag.path), "--topic", TOPIC,
                                      "--foxglove", "127.0.0.1:0"])
    assert result.exit_code == 0, result.output
    assert "Foxglove: open a WebSocket connection to ws://127.0.0.1:" in result.output
    assert "6 frames" in result.output


def test_cli_bad_foxglove_address_is_one_line(toy_artifact: Path) -> None:
    from typer.testing import CliRunner

    from edgecv.cli import app

    result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", "x.bag", "--foxglove", "127.0.0.1:99999"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --foxglove: expected HOST:PORT with a port in 0..65535, found '127.0.0.1:99999'"
