"""Starting and stopping the local Ray cluster that ``edgecv serve`` runs on.

Defaults keep everything on this machine and quiet: Ray's node and Serve's HTTP proxy bind
127.0.0.1, the dashboard is off (``include_dashboard=False``), usage statistics are off
(``RAY_USAGE_STATS_ENABLED=0``, set before Ray is imported), and no runtime environment is
requested, so nothing is downloaded. A non-loopback HTTP host is allowed but announced with a
:class:`PublicBindWarning` (one line).

An already running Ray (``ray.init`` called by the user, or ``RAY_ADDRESS``) is used as it is;
only a cluster this module started is shut down by :func:`stop_cluster`.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import warnings
from typing import Any

from edgecv.errors import EdgecvError, MissingDependencyError, OptionError

LOCALHOST = "127.0.0.1"
NAMESPACE = "edgecv"


#: Environment Ray reads, set (unless the user set them) before Ray is imported. Timeouts are raised
#: because an edge box or a shared CI machine can be busy enough to miss Ray's defaults, which kill
#: a healthy but slow-to-start process (seen at load average 20 on 2 cores).
RAY_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage statistics sent anywhere
    # the raylet aborts when its metrics/dashboard agent (started even without the dashboard) has not
    # written its port file within this time (default 30 s)
    "RAY_agent_register_timeout_ms": "120000",
    "RAY_raylet_start_wait_time_s": "120",
    # Serve kills an HTTP proxy that is not ready within 5 s / misses 3 health checks of 10 s
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
}


class ClusterError(EdgecvError):
    """The local Ray cluster could not be started."""


class PublicBindWarning(UserWarning):
    """The HTTP endpoint listens on an address other hosts can reach."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and every address in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int) -> None:
    """Refuse a malformed ``port`` (:class:`OptionError`); warn (one line) for a non-loopback ``host``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise OptionError(f"port: expected an integer in 1..65535, found {port!r}")
    if not isinstance(host, str) or not host:
        raise OptionError(f"host: expected an address such as 127.0.0.1, found {host!r}")
    if not is_loopback(host):
        warnings.warn(f"edgecv serve: HTTP listens on {host}:{port}, reachable from other hosts "
                      "(not only this machine); the endpoint has no authentication", PublicBindWarning, stacklevel=3)


def import_ray() -> Any:
    """``ray`` with usage statistics switched off, or :class:`MissingDependencyError` naming the extra."""
    for name, value in RAY_DEFAULTS.items():
        os.environ.setdefault(name, value)  # read by the processes ray.init starts (they inherit them)
    try:
        import ray
        from ray import serve  # noqa: F401  (the serve extra: starlette, uvicorn, fastapi)
    except ImportError as exc:
        raise MissingDependencyError(f"serving needs Ray Serve: pip install 'edgecv[serve]' ({exc})") from exc
    return ray


def start_cluster(num_cpus: int | None = None) -> bool:
    """Start a local single-node Ray on 127.0.0.1 unless Ray is already initialised in this process
    or ``RAY_ADDRESS`` names one to join. Returns True when this call started (and so owns) it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {"include_dashboard": False, "namespace": NAMESPACE, "log_to_driver": False,
                               "configure_logging": False}
    if address:
        ray.init(address=address, **options)
        return False
    handler = signal.getsignal(signal.SIGTERM)
    _init_local(ray, num_cpus or os.cpu_count() or 1, options)
    # ray.init puts a fatal-signal handler (log and abort, no cleanup) over SIGTERM: give the
    # caller's Python handler back, so `edgecv serve` can shut down the cluster it started
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
    return True


def _init_local(ray: Any, num_cpus: int, options: dict[str, Any], attempts: int = 2) -> None:
    """``ray.init`` of a local node, tried twice: Ray gives its raylet a fixed 30 s to register,
    which a machine under heavy load can miss once; a failure is one :class:`ClusterError` line."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, _node_ip_address=LOCALHOST, **options)
            return
        except Exception as exc:  # noqa: BLE001  Ray raises a bare Exception for a node that did not start
            ray.shutdown()  # the half-started processes
            if attempt == attempts:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ClusterError(f"Ray: expected a local node on {LOCALHOST} to start, found after "
                                   f"{attempts} attempts: {first}") from exc


def start_http(host: str, port: int) -> None:
    """Start Serve (controller + one HTTP proxy on the head node) listening on ``host:port``."""
    from ray import serve

    for attempt in (1, 2):
        try:
            serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
            return
        except TimeoutError:  # Serve waits a fixed 60 s for its proxy; a busy machine may need longer
            if attempt == 2:
                raise


def stop_cluster(owned: bool, app_name: str | None = None) -> None:
    """Delete ``app_name``; shut Serve and Ray down too when this process started the cluster."""
    ray = import_ray()
    if not ray.is_initialized():
        return
    from ray import serve

    if owned:
        serve.shutdown()
        ray.shutdown()
    elif app_name is not None:
        serve.delete(app_name)
