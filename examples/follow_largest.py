"""Follow the largest object: a toy steering controller on edgecv's control-loop API.

Replays a recording (any ``--source`` edgecv reads: a video file, a camera index, a URL) in a
:class:`~edgecv.runtimes.BackgroundPredictor` and, at a fixed rate, turns towards the largest
object: turn rate = gain x the horizontal offset of its box centre (-1 left edge .. +1 right
edge). A result older than ``--max-age`` is never acted on (hold: turn 0). One line per tick:

    t=0.433 seq=5 age=0.061 turn=+0.25 offset=+0.42 target=circle
    t=0.466 seq=- age=- turn=+0.00 hold

    python examples/follow_largest.py exports/yolo/model.onnx --source drive.mp4
"""

from __future__ import annotations

import argparse
import time

from edgecv.runtimes import BackgroundPredictor, Detections

GAIN = 0.6  # rad/s of turn per unit of offset
MAX_TURN = 0.5  # rad/s


def steer(detections: Detections, width: int) -> tuple[float, float, str] | None:
    """``(turn, offset, label)`` towards the largest box (x1, y1, x2, y2 pixels); None if there is none."""
    if len(detections) == 0:
        return None
    boxes = detections.boxes
    largest = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).argmax())
    offset = ((boxes[largest, 0] + boxes[largest, 2]) / 2 - width / 2) / (width / 2)
    return max(-MAX_TURN, min(MAX_TURN, GAIN * offset)), float(offset), detections.labels[largest]


def main() -> None:
    parser = argparse.ArgumentParser(description="Steer towards the largest detected object.")
    parser.add_argument("model")
    parser.add_argument("--source", required=True, help="video file, ROS bag, camera index or URL")
    parser.add_argument("--topic", help="the image topic of a ROS bag")
    parser.add_argument("--hz", type=float, default=30.0, help="control loop rate")
    parser.add_argument("--rate", type=float, default=15.0, help="inference rate cap (Hz)")
    parser.add_argument("--max-age", type=float, default=0.3, help="ignore results older than this (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    args = parser.parse_args()
    source = int(args.source) if args.source.isdigit() else args.source

    with BackgroundPredictor(args.model, source, rate=args.rate, topic=args.topic) as perception:
        start = tick = time.monotonic()
        while perception.running and tick - start < args.duration:
            seen = perception.latest(max_age=args.max_age)
            command = None if seen is None else steer(seen.detections, seen.result.image.shape[1])
            stamp = f"t={tick - start:.3f}"
            if command is None:
                state = "hold" if seen is None else "search"
                print(f"{stamp} seq={seen.seq if seen else '-'} age=- turn=+0.00 {state}", flush=True)
            else:
                turn, offset, label = command
                print(f"{stamp} seq={seen.seq} age={seen.age:.3f} turn={turn:+.2f} offset={offset:+.2f} "
                      f"target={label}", flush=True)
            tick += 1.0 / args.hz
            time.sleep(max(0.0, tick - time.monotonic()))
        health = perception.health()
    print(f"done: {health.frames_out} results, {health.dropped} frames skipped, "
          f"{health.rate:.1f} Hz, last error: {health.last_error}", flush=True)


if __name__ == "__main__":
    main()
