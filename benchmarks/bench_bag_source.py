"""Bag source alone (no inference): is reading a ROS bag ever the bottleneck?

Writes N (default 1,000) synthetic 640x480 frames twice: as ``sensor_msgs/CompressedImage`` JPEGs
in a bag (ROS 1 ``.bag``, ROS 2 sqlite3 and ROS 2 MCAP, written with rosbags) and as a video file
(MJPEG ``.avi``: the same JPEG frames in a video container, the like-for-like comparison; also
``mp4v`` and H.264 for reference). Then each is read through edgecv's own stream source
(:func:`edgecv.runtimes.streams.readers.open_source`, decoded BGR frames, nothing else) and the
frames/s compared. Target: bag >= 0.9x video. Prints the CPU class and the load average, since
the machine is shared.

    python benchmarks/bench_bag_source.py --frames 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
from fractions import Fraction
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgecv.runtimes.cpu import cpu_features  # noqa: E402
from edgecv.runtimes.streams.readers import open_source  # noqa: E402

TOPIC = "/camera/image_raw/compressed"


def scene(index: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A moving scene with texture (gradients, shapes, noise): realistic JPEG and video sizes."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x + index * 3) % 256, (y + index * 2) % 256, (x + y) // 5 % 256], -1).astype(np.uint8)
    cx, cy = (index * 7) % width, height // 2 + int(100 * np.sin(index / 15))
    cv2.circle(image, (cx, cy), 60, (0, 0, 255), -1)
    cv2.rectangle(image, (width - cx - 80, 100), (width - cx, 220), (255, 255, 0), -1)
    noise = rng.integers(-8, 9, image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_videos(folder: Path, jpegs: list[np.ndarray]) -> dict[str, Path]:
    """The same frames as video files: MJPEG in AVI holding the bag's very JPEG bytes (the
    like-for-like comparison: same bitstreams, only the container differs), MPEG-4 part 2
    (``mp4v``, cheap to decode) and H.264 (libx264, what cameras record). Needs PyAV (``av``)."""
    import av

    paths = {"video mjpeg": folder / "frames.avi", "video mp4v": folder / "frames.mp4",
             "video h264": folder / "frames_h264.mp4"}
    with av.open(str(paths["video mjpeg"]), "w") as container:
        stream = container.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuvj420p"
        for i, data in enumerate(jpegs):
            packet = av.Packet(data.tobytes())
            packet.stream, packet.pts, packet.dts = stream, i, i
            packet.time_base = Fraction(1, 30)
            packet.is_keyframe = True
            container.mux(packet)
    for codec, options in (("mp4v", None), ("h264", {"preset": "veryfast", "crf": "23"})):
        with av.open(str(paths[f"video {codec}"]), "w") as container:
            stream = container.add_stream("mpeg4" if codec == "mp4v" else "libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
            if options:
                stream.options = options
            for data in jpegs:
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return paths


def write_inputs(folder: Path, frames: int, quality: int) -> dict[str, Path]:
    """The same frames as three bags (CompressedImage JPEG) and as video files (:func:`write_videos`)."""
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.rosbag2 import StoragePlugin, Writer as Writer2
    from rosbags.typesys import Stores, get_typestore

    jpegs = [cv2.imencode(".jpg", scene(i), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].ravel() for i in range(frames)]
    paths = write_videos(folder, jpegs)
    for kind in ("ros1 .bag", "ros2 sqlite3", "ros2 mcap"):
        ros1 = kind.startswith("ros1")
        store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
        t = store.types
        msgtype = "sensor_msgs/msg/CompressedImage"
        path = folder / ("drive.bag" if ros1 else kind.split()[1])
        bag = Writer1(path) if ros1 else Writer2(path, version=9, storage_plugin=StoragePlugin.MCAP if "mcap" in kind
                                                else StoragePlugin.SQLITE3)
        serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
        with bag:
            conn = bag.add_connection(TOPIC, msgtype, typestore=store)
            for i, data in enumerate(jpegs):
                ns = 1_700_000_000_000_000_000 + i * 33_333_333
                stamp = t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
                head = (t["std_msgs/msg/Header"](seq=i, stamp=stamp, frame_id="cam") if ros1
                        else t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"))
                bag.write(conn, ns, serialize(t[msgtype](header=head, format="jpeg", data=data), msgtype))
        paths[kind] = path
    return paths


def read_rate(path: Path, topic: str | None) -> tuple[float, int]:
    """Frames/s reading ``path`` through edgecv's stream source (decoded BGR frames), and the count."""
    source = open_source(path, None, topic=topic)
    try:
        start = time.perf_counter()
        count = sum(1 for _ in source.read())
        return count / (time.perf_counter() - start), count
    finally:
        source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of reading every input")
    parser.add_argument("--ahead", type=int, default=None, help="compressed frames decoded ahead (bag source)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the bag's images")
    args = parser.parse_args()
    if args.ahead:
        from edgecv.runtimes.ros import bag_source

        bag_source.DECODE_AHEAD = args.ahead
    cpu = cpu_features()
    print(f"CPU: {cpu.model or 'unknown'} ({cpu.vector_isa or 'no SIMD flags'}), {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(Path(tmp), args.frames, args.quality)
        rounds: list[dict[str, float]] = []
        for _ in range(args.repeats):  # interleaved rounds: a load spike hits every input of a round alike
            rates = {}
            for name, path in paths.items():
                fps, count = read_rate(path, None if name.startswith("video") else TOPIC)
                # mp4v/h264: the reader may report a frame or two less at the end of the container
                assert count >= args.frames - 2, f"{name}: read {count} of {args.frames} frames"
                rates[name] = fps
            rounds.append(rates)
    print(f"{args.frames} frames 640x480, JPEG quality {args.quality}, {args.repeats} interleaved rounds; "
          "median frames/s, and the median over rounds of each round's ratio")
    videos = [name for name in paths if name.startswith("video")]
    print(f"{'input':14s} {'frames/s':>9s}  " + "  ".join(f"{'x ' + v[6:]:>7s}" for v in videos))
    for name in paths:
        fps = statistics.median(r[name] for r in rounds)
        ratios = [statistics.median(r[name] / r[v] for r in rounds) for v in videos]
        print(f"{name:14s} {fps:9.1f}  " + "  ".join(f"{x:7.2f}" for x in ratios))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
