"""Load the ``tensorrt.plugin`` Python sources of a ``tensorrt-cu12-bindings`` wheel without libnvinfer.

The bindings wheel ships ``tensorrt_bindings/plugin/*.py`` (NVIDIA's Quick Deployable Plugin
front end, validation code included) beside a compiled ``tensorrt.so`` that needs libnvinfer and
a GPU driver. To run NVIDIA's *own* validation of ``register`` / ``aot_impl`` signatures on a
CPU machine, this module puts a permissive stand-in for the compiled ``tensorrt`` module in
``sys.modules`` -- its enums, classes and registry accept anything -- with ``__path__`` pointing
at the wheel's folder, so ``import tensorrt.plugin`` imports the real ``plugin`` package from the
wheel. The stand-in replaces only the C extension; the code under test (edgecv's signatures) and
the checker (NVIDIA's ``_validate.py`` / ``_lib.py``) are real.

Run in a fresh interpreter (a subprocess): it takes over the name ``tensorrt``.

    python trt_sources.py <unpacked wheel dir>    # prints JSON: version, checks passed
"""

import json
import sys
import types
from pathlib import Path


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _Anything(metaclass=_Meta):
    """Any attribute, any call, any base class: the stand-in for everything the C extension defines."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __call__(self, *args, **kwargs):
        return _Anything()


def install_stub(bindings_dir: Path, version: str) -> None:
    classes: dict = {}
    stub = types.ModuleType("tensorrt")
    stub.__path__ = [str(bindings_dir)]  # so `tensorrt.plugin` is the wheel's real package
    stub.__version__ = version

    def module_getattr(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return classes.setdefault(name, _Meta(name, (_Anything,), {}))

    stub.__getattr__ = module_getattr
    sys.modules["tensorrt"] = stub


def negative_control(trtp) -> str:
    """NVIDIA's validation must reject an aot_impl without ``tactic``: proof that the checker is live."""
    from typing import Tuple

    @trtp.register("edgecvtest::Bad")
    def bad_desc(x: trtp.TensorDesc, k: int) -> Tuple[trtp.TensorDesc]:
        return (x.like(),)

    try:
        @trtp.aot_impl("edgecvtest::Bad")
        def bad_aot(x: trtp.TensorDesc, k: int, outputs: Tuple[trtp.TensorDesc]):
            return None
    except ValueError as exc:
        return str(exc)
    return ""


def main(root: str) -> None:
    root_path = Path(root)
    bindings = root_path / "tensorrt_bindings"
    version = next(root_path.glob("*.dist-info")).name.removesuffix(".dist-info").split("-")[1]
    install_stub(bindings, version)
    import tensorrt.plugin as trtp

    from edgecv.plugins import plugin_module, plugin_names

    checked = []
    for name in plugin_names(None):
        try:
            module = plugin_module(name, "trt")
        except ModuleNotFoundError:
            continue
        module.register(trtp)
        plugin_id = plugin_module(name).PLUGIN_ID
        definition = trtp._lib.QDP_REGISTRY[plugin_id]
        checked.append({"plugin": plugin_id, "inputs": list(definition.input_tensor_names),
                        "attrs": list(definition.input_attrs), "num_outputs": definition.num_outputs,
                        "aot_attrs": list(definition.aot_impl_attr_names),
                        "has_aot": definition.aot_impl_func is not None})
    print(json.dumps({"version": version, "negative_control": negative_control(trtp), "validate_file": str(Path(trtp.__file__).parent / "_validate.py"),
                      "plugins": checked}))


if __name__ == "__main__":
    main(sys.argv[1])
