"""The ``edgecv serve`` and ``edgecv export-triton`` commands (registered on :data:`edgecv.cli.app`).

Thin like the rest of the CLI: :func:`edgecv.serve.command.run_serve` runs a Ray Serve application,
:func:`edgecv.serve.triton_repo.write_triton_repository` writes a Triton model repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edgecv.cli import app, console, err_console, user_errors


@app.command("serve")
@user_errors
def serve_cmd(
    model: str = typer.Argument(..., help="Artifact (.onnx, .engine) or what --backend takes."),
    replicas: int = typer.Option(1, help="Replicas, each holding one Predictor."),
    max_batch: int = typer.Option(8, help="Dynamic batching: most images per inference (--dynamic artifact, "
                                  "or the artifact's fixed batch)."),
    batch_wait_ms: float = typer.Option(5.0, help="Dynamic batching: wait this long for a batch to fill."),
    port: int = typer.Option(8000, help="HTTP port (POST /predict, GET /health)."),
    host: str = typer.Option("127.0.0.1", help="HTTP address; anything but loopback is announced with a warning."),
    backend: str = typer.Option("auto", help="Predictor backend: auto, onnxruntime, openvino, tensorrt, ..."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N; default: the backend's own."),
    threads: Optional[int] = typer.Option(None, help="Inference threads per replica."),
    conf: Optional[float] = typer.Option(None, help="Score threshold on top of the graph's."),
    max_ongoing: Optional[int] = typer.Option(None, help="Requests one replica takes at once (default 2 x max-batch)."),
    streams: Optional[Path] = typer.Option(None, help="cams.yaml: one stream actor per camera, results to jsonl; "
                                           "exits when every stream has ended."),
    duration: Optional[float] = typer.Option(None, help="Stop after this many seconds (default: until SIGTERM/Ctrl-C)."),
) -> None:
    """Serve a model on a local Ray Serve cluster: replicas, dynamic batching, HTTP, camera streams."""
    from edgecv.serve.command import run_serve

    code = run_serve(model, streams=streams, duration=duration, say=lambda line: console.print(escape(line)),
                     warn=lambda line: err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False),
                     replicas=replicas, max_batch=max_batch, batch_wait_ms=batch_wait_ms, port=port, host=host,
                     backend=backend, device=device, threads=threads, conf=conf, max_ongoing_requests=max_ongoing)
    if code:
        raise typer.Exit(code)


@app.command("export-triton")
@user_errors
def export_triton(
    artifact: Path = typer.Argument(..., help="edgecv artifact: .onnx, or a TensorRT .engine/.plan with its .json."),
    repo: Path = typer.Argument(..., help="Triton model repository folder (created if missing)."),
    max_batch: Optional[int] = typer.Option(None, help="Triton max_batch_size: a --dynamic artifact defaults to 8 "
                                            "(0 = no batching); a fixed-batch artifact takes only 0 (the default)."),
    instances: int = typer.Option(1, help="Model instances (instance_group count)."),
    kind: str = typer.Option("cpu", help="Instance kind: cpu or gpu (a TensorRT engine needs gpu)."),
    name: Optional[str] = typer.Option(None, help="Model name (folder); default: the artifact's model family."),
    platform: Optional[str] = typer.Option(None, help="onnxruntime_onnx, tensorrt_plan (default by suffix) or python "
                                           "(edgecv's ONNX Runtime model.py, for servers without that backend)."),
    queue_delay_us: int = typer.Option(100, help="dynamic_batching max_queue_delay_microseconds."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads per instance (not for engines)."),
) -> None:
    """Write repo/<name>/ (config.pbtxt, 1/model.onnx|model.plan, edgecv.json) for Triton Inference Server."""
    from edgecv.serve.triton_repo import write_triton_repository

    model = write_triton_repository(artifact, repo, name=name, max_batch=max_batch, instances=instances, kind=kind,
                                    platform=platform, queue_delay_us=queue_delay_us, threads=threads)
    console.print(f"[green]wrote[/] {model.dir} (platform {model.platform}, max_batch_size "
                  f"{model.config.max_batch_size}); clients: Predictor('grpc://HOST:8001/{model.name}', "
                  "backend='triton')", highlight=False)
