"""Load generator and serving figures for ``edgecv serve`` (Ray Serve), side by side in one run.

The load generator (:func:`load`): N concurrent HTTP clients (one keep-alive connection each)
POST real JPEGs (skimage photos encoded by OpenCV) to ``/predict`` for a bounded time and count,
on loopback only (the URL is checked), and report throughput, p50/p95/p99 latency and errors.

Parts (``--parts``, all by default), on the demo model exported at 640 with a dynamic batch:

* ``overhead``: 1 replica, 8 clients, batching on, vs a bare ``Predictor`` loop in this process
  that decodes the same JPEGs and predicts them one by one with the same ``--threads``; target
  served >= 0.8x the bare loop's images/s.
* ``batching``: the same load with ``max_batch`` 8 vs 1, ``--runs`` interleaved runs each (a
  redeploy between runs); median images/s of each and their spread (min-max), and the ratio.
* ``kill``: 2 replicas under load, one SIGKILLed: failed requests vs ``max_ongoing_requests``,
  recovery time (kill -> a replacement replica answers /health).
* ``soak``: ``--soak`` seconds at 8 clients on 1 replica: errors, replica RSS growth (target < 50 MB).

    python benchmarks/bench_serve.py                       # everything, ~5 min
    python benchmarks/bench_serve.py --parts overhead,batching --duration 15 --runs 3
    python benchmarks/bench_serve.py --url http://127.0.0.1:8000 --clients 16 --duration 30   # just load
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

PORT = 18711


@dataclass
class LoadResult:
    clients: int
    seconds: float
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    events: list[tuple[float, str]] = field(default_factory=list, repr=False)  # (time, outcome) of failures

    @property
    def images_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict:
        return {"clients": self.clients, "seconds": round(self.seconds, 2), "ok": self.ok,
                "failed": sum(self.errors.values()), "errors": self.errors,
                "images_per_s": round(self.images_per_s, 2), "p50_ms": round(self.percentile(50), 1),
                "p95_ms": round(self.percentile(95), 1), "p99_ms": round(self.percentile(99), 1)}


def photos() -> list[bytes]:
    """Four real photos as JPEG bytes (OpenCV, quality 95)."""
    from skimage import data

    images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [cv2.imencode(".jpg", np.ascontiguousarray(im[:, :, ::-1]))[1].tobytes() for im in images]


def _check_loopback(url: str) -> tuple[str, int]:
    from edgecv.serve.cluster import is_loopback

    parts = urlparse(url)
    if parts.scheme != "http" or not parts.hostname or not is_loopback(parts.hostname):
        raise SystemExit(f"--url: expected http://127.0.0.1:PORT (loopback only), found {url}")
    return parts.hostname, parts.port or 80


def load(url: str, jpgs: list[bytes], clients: int, duration: float, max_requests: int = 100_000,
         timeout: float = 30.0) -> LoadResult:
    """``clients`` threads POST ``jpgs`` round-robin for ``duration`` s or ``max_requests`` in all."""
    host, port = _check_loopback(url)
    result, lock, count = LoadResult(clients, 0.0), threading.Lock(), [0]
    start = time.perf_counter()

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        n = index
        while time.perf_counter() - start < duration:
            with lock:
                if count[0] >= max_requests:
                    break
                count[0] += 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=jpgs[n % len(jpgs)], headers={"Content-Type": "image/jpeg"})
                response = conn.getresponse()
                response.read()
                outcome = "ok" if response.status == 200 else f"http {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            t1 = time.perf_counter()
            with lock:
                if outcome == "ok":
                    result.ok += 1
                    result.latencies_ms.append((t1 - t0) * 1e3)
                else:
                    result.errors[outcome] = result.errors.get(outcome, 0) + 1
                    result.events.append((t1 - start, outcome))
            n += clients
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    result.seconds = time.perf_counter() - start
    return result


def bare_loop(model: Path, jpgs: list[bytes], duration: float, threads: int | None) -> float:
    """images/s of decode + ``Predictor`` one by one, in this process."""
    from edgecv.runtimes.predictor import Predictor

    with Predictor(model, threads=threads) as predictor:
        predictor(cv2.imdecode(np.frombuffer(jpgs[0], np.uint8), cv2.IMREAD_COLOR))  # warm-up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration:
            predictor(cv2.imdecode(np.frombuffer(jpgs[done % len(jpgs)], np.uint8), cv2.IMREAD_COLOR))
            done += 1
        return done / (time.perf_counter() - start)


def health(url: str) -> dict:
    host, port = _check_loopback(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def deploy(model: Path, replicas: int, max_batch: int, threads: int | None, max_ongoing: int | None = None):
    from edgecv.serve import serve

    return serve(model, replicas=replicas, max_batch=max_batch, batch_wait_ms=5, port=PORT, threads=threads,
                 max_ongoing_requests=max_ongoing)


def part_overhead(model: Path, jpgs: list[bytes], args: argparse.Namespace) -> dict:
    app = deploy(model, 1, 8, args.threads)
    load(app.url, jpgs, args.clients, 3.0)  # warm-up
    served, bare = [], []
    for _ in range(args.runs):  # interleaved: both see the same machine load
        served.append(load(app.url, jpgs, args.clients, args.duration))
        bare.append(bare_loop(model, jpgs, args.duration, args.threads))
    ratio = statistics.median(s.images_per_s for s in served) / statistics.median(bare)
    return {"served": [s.summary() for s in served], "bare_images_per_s": [round(b, 2) for b in bare],
            "served_over_bare": round(ratio, 3), "target": ">= 0.8"}


def part_batching(model: Path, jpgs: list[bytes], args: argparse.Namespace) -> dict:
    runs: dict[int, list[LoadResult]] = {8: [], 1: []}
    for _ in range(args.runs):
        for max_batch in (8, 1):  # interleaved, a redeploy each time
            app = deploy(model, 1, max_batch, args.threads)
            load(app.url, jpgs, args.clients, 2.0)  # warm-up
            runs[max_batch].append(load(app.url, jpgs, args.clients, args.duration))
    rates = {b: [r.images_per_s for r in rs] for b, rs in runs.items()}
    return {f"max_batch_{b}": {"images_per_s": [round(x, 2) for x in xs], "median": round(statistics.median(xs), 2),
                               "spread": round(max(xs) - min(xs), 2),
                               "p50_ms": [round(r.percentile(50), 1) for r in runs[b]]} for b, xs in rates.items()} | {
        "ratio_on_over_off": round(statistics.median(rates[8]) / statistics.median(rates[1]), 3),
        "ratio_per_run": [round(a / b, 3) for a, b in zip(rates[8], rates[1])]}


def part_kill(model: Path, jpgs: list[bytes], args: argparse.Namespace) -> dict:
    ongoing = 16
    app = deploy(model, 2, 8, args.threads, max_ongoing=ongoing)
    load(app.url, jpgs, args.clients, 2.0)
    pids: set[int] = set()
    while len(pids) < 2:
        pids.add(health(app.url)["pid"])
    victim = min(pids)
    box: dict[str, LoadResult] = {}
    loader = threading.Thread(target=lambda: box.update(r=load(app.url, jpgs, args.clients, 20.0)))
    loader.start()
    time.sleep(3.0)
    killed = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    recovered = None
    while time.perf_counter() - killed < 60:
        try:
            seen = {health(app.url)["pid"] for _ in range(6)}
        except (OSError, http.client.HTTPException, ValueError):
            continue
        if victim not in seen and len(seen) == 2:
            recovered = time.perf_counter() - killed
            break
        time.sleep(0.2)
    loader.join(90)
    result = box["r"]
    return {"load": result.summary(), "max_ongoing_requests": ongoing, "failed": sum(result.errors.values()),
            "failed_within_s_of_kill": [round(t - 3.0, 2) for t, _ in result.events][:40],
            "recovery_s": None if recovered is None else round(recovered, 2)}


def part_soak(model: Path, jpgs: list[bytes], args: argparse.Namespace) -> dict:
    app = deploy(model, 1, 8, args.threads)
    load(app.url, jpgs, args.clients, 5.0)  # warm-up: arenas and caches reach their working size
    before = health(app.url)["rss_mb"]
    result = load(app.url, jpgs, args.clients, args.soak)
    after = health(app.url)["rss_mb"]
    return {"load": result.summary(), "rss_mb_before": before, "rss_mb_after": after,
            "rss_growth_mb": round(after - before, 1), "target": "0 errors, growth < 50 MB"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="dynamic-batch artifact (default: the demo exported at 640)")
    parser.add_argument("--parts", default="overhead,batching,kill,soak")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--soak", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads, replicas and bare loop")
    parser.add_argument("--url", help="only run the load generator against this running server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from edgecv.runtimes.cpu import cpu_features

    jpgs = photos()
    cpu = cpu_features()
    print(f"CPU: {cpu.model} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.2f}")
    if args.url:
        print(json.dumps(load(args.url, jpgs, args.clients, args.duration).summary(), indent=1))
        return
    model = args.model
    if model is None:
        from edgecv.export.api import export_model
        from edgecv.export.onnx_export import ExportOptions

        out = Path(tempfile.mkdtemp()) / "model.onnx"
        model = export_model("yolo", out=out, opts=ExportOptions(imgsz=640, dynamic=True, check=False)).path
    figures: dict = {"cpu": cpu.model, "cores": os.cpu_count(), "model": str(model), "clients": args.clients}
    try:
        for part in args.parts.split(","):
            figures[part] = globals()[f"part_{part}"](model, jpgs, args)
            figures[part]["load_average"] = round(os.getloadavg()[0], 2)
            print(part, json.dumps(figures[part], indent=1), flush=True)
    finally:
        import ray

        if ray.is_initialized():
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
