"""Strict stand-ins for ``tensorrt`` (the TensorRT 10 / 11 Python API surface) and ``torch_tensorrt`` for CPU tests.

They let the default (GPU-free) suite drive engine/trt_build.py, trt_backend.py and trt_torch.py through the
same calls a real install would see. Strict means:
- only names TensorRT 10 has exist, with TensorRT 10's argument counts (a wrong arity is a TypeError);
  names removed in TensorRT 10 (``Builder.build_engine``, ``IBuilderConfig.max_workspace_size``,
  ``execute_async_v2``, ``get_binding_*``) are simply absent, so using them is an AttributeError, and
  setting an attribute the real class lacks is an AttributeError too (pybind11 classes have no __dict__);
- ``major=11`` also drops what TensorRT 11 removed: the precision builder flags (FP16, BF16, INT8, FP8, ...),
  ``IBuilderConfig.int8_calibrator`` and the ``IInt8*Calibrator`` classes;
- every call is appended to ``module.calls`` so tests can check the order;
- ``module.knobs`` makes TensorRT fail the ways the real one does (None from build, parser errors, ...).
A "plan" is JSON naming the engine's I/O; ``deserialize_cuda_engine`` reads it back.
The real-GPU tests in test_engine_trt.py (marker ``trt``) remain the check against the real library.
"""

from __future__ import annotations

import importlib.machinery
import json
import types
from dataclasses import dataclass, field

VERSIONS = {10: "10.13.3.9", 11: "11.0.0.114"}
FLAGS_10 = (
    "FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
    "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
    "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS",
    "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING", "STRICT_NANS", "MONITOR_MEMORY",
)
REMOVED_IN_11 = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"}
DEFAULT_FLAGS = {"TF32"}  # TensorRT enables TF32 unless cleared
PLAN_MAGIC = b"FAKEPLAN"


@dataclass
class Knobs:
    parse_errors: list = field(default_factory=list)  # [(node, op, desc)]: parse_from_file returns False
    build_returns_none: bool = False
    timing_cache_refuses: set = field(default_factory=set)  # blobs set_timing_cache returns False for
    deserialize_returns_none: bool = False
    context_none: bool = False
    set_address_ok: bool = True
    network_batch_unknown: bool = False  # the network definition reports -1 for dim 0 (resolved when built)
    engine_shapes: dict = field(default_factory=dict)  # name -> shape the built engine reports instead
    engine_drops: set = field(default_factory=set)  # tensor names the built engine lacks


class _Member:
    def __init__(self, owner: str, name: str, value: int) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __repr__(self) -> str:
        return f"{self.owner}.{self.name}"

    __str__ = __repr__

    def __int__(self) -> int:
        return self.value


def _enum(owner: str, names) -> type:
    return type(owner, (), {n: _Member(owner, n, i) for i, n in enumerate(names)})


class _Strict:
    """Setting an attribute the real pybind11 class does not have is an AttributeError."""

    _settable: frozenset = frozenset()

    def __setattr__(self, name, value) -> None:
        if not name.startswith("_") and name not in self._settable:
            raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def make_fake_tensorrt(major: int = 10) -> types.ModuleType:
    m = types.ModuleType("tensorrt")
    m.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec needs one
    m.__version__ = VERSIONS[major]
    m.calls = []
    m.knobs = Knobs()
    m.calibration = {"pointers": [], "ended_with_none": False, "cache_hit": False}
    record = m.calls.append
    flag_names = [n for n in FLAGS_10 if major < 11 or n not in REMOVED_IN_11]
    m.BuilderFlag = _enum("BuilderFlag", flag_names)
    m.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM"])
    m.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64", "INT4"])
    m.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    m.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "STRONGLY_TYPED"])
    knobs = m.knobs

    class Logger(_Strict):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity=1) -> None:
            self._min = min_severity

    class ITensor(_Strict):
        def __init__(self, name, shape, dtype) -> None:
            self._name, self._shape, self._dtype = name, tuple(shape), dtype

        name = property(lambda self: self._name)
        shape = property(lambda self: self._shape)
        dtype = property(lambda self: self._dtype)

    class INetworkDefinition(_Strict):
        def __init__(self) -> None:
            self._inputs: list = []
            self._outputs: list = []

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, index):
            return self._inputs[index]

        def get_output(self, index):
            return self._outputs[index]

    class IParserError:
        def __init__(self, node, op, desc) -> None:
            self._e = (node, op, desc)

        def node(self):
            return self._e[0]

        def node_operator(self):
            return self._e[1]

        def desc(self):
            return self._e[2]

        def code(self):
            return 1

    class OnnxParser(_Strict):
        def __init__(self, network, logger) -> None:
            self._network, self._errors = network, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index):
            return self._errors[index]

        def parse_from_file(self, model):
            import onnx

            record(("parse_from_file", str(model)))
            if knobs.parse_errors:
                self._errors = [IParserError(*e) for e in knobs.parse_errors]
                return False
            graph = onnx.load(str(model), load_external_data=False).graph
            inits = {i.name for i in graph.initializer}

            def tensor(v):
                dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
                if knobs.network_batch_unknown:
                    dims[0] = -1
                return ITensor(v.name, dims, m.DataType.FLOAT)

            self._network._inputs = [tensor(v) for v in graph.input if v.name not in inits]
            self._network._outputs = [tensor(v) for v in graph.output]
            return True

    class ITimingCache(_Strict):
        def __init__(self, blob: bytes) -> None:
            self._blob = bytes(blob)

        def serialize(self):
            return self._blob or b"fake-timing-cache"

        def combine(self, input_cache, ignore_mismatch):
            return True

        def reset(self):
            return True

    class IBuilderConfig(_Strict):
        _settable = frozenset({"int8_calibrator", "builder_optimization_level", "profiling_verbosity"} if major < 11
                              else {"builder_optimization_level", "profiling_verbosity"})

        def __init__(self) -> None:
            self._flags = {getattr(m.BuilderFlag, n) for n in DEFAULT_FLAGS}
            self._pools: dict = {}
            self._timing = None
            if major < 11:
                object.__setattr__(self, "int8_calibrator", None)

        def set_memory_pool_limit(self, pool, pool_size):
            assert isinstance(pool, _Member) and pool.owner == "MemoryPoolType", pool
            record(("set_memory_pool_limit", pool.name, int(pool_size)))
            self._pools[pool.name] = int(pool_size)

        def get_memory_pool_limit(self, pool):
            return self._pools.get(pool.name, 0)

        def create_timing_cache(self, serialized_timing_cache):
            record(("create_timing_cache", bytes(serialized_timing_cache)))
            return ITimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache, ignore_mismatch):
            ok = cache._blob not in knobs.timing_cache_refuses
            record(("set_timing_cache", bool(ignore_mismatch), ok))
            if ok:
                self._timing = cache
            return ok

        def get_timing_cache(self):
            return self._timing

        def _check(self, flag):
            if not (isinstance(flag, _Member) and flag.owner == "BuilderFlag"):
                raise TypeError(f"set_flag(): incompatible function arguments: {flag!r}")

        def set_flag(self, flag):
            self._check(flag)
            record(("set_flag", flag.name))
            self._flags.add(flag)

        def clear_flag(self, flag):
            self._check(flag)
            record(("clear_flag", flag.name))
            self._flags.discard(flag)

        def get_flag(self, flag):
            return flag in self._flags

    class IHostMemory(bytes):
        pass

    class Builder(_Strict):
        def __init__(self, logger) -> None:
            self._logger = logger

        def create_network(self, flags=0):
            record(("create_network", int(flags)))
            return INetworkDefinition()

        def create_builder_config(self):
            return IBuilderConfig()

        def build_serialized_network(self, network, config):
            flags = sorted(f.name for f in config._flags)
            record(("build_serialized_network", tuple(flags)))
            if knobs.build_returns_none or not network.num_inputs:
                return None
            if "INT8" in flags and not _calibrate(config.int8_calibrator, [t.name for t in network._inputs]):
                return None
            io = [(t, "input") for t in network._inputs] + [(t, "output") for t in network._outputs]
            tensors = [{"name": t.name, "shape": [max(int(d), 1) for d in t.shape], "mode": mode} for t, mode in io]
            return IHostMemory(PLAN_MAGIC + json.dumps({"io": tensors, "flags": flags}).encode())

    def _calibrate(calibrator, names) -> bool:
        if calibrator is None:
            return False  # the real builder logs an error and returns None
        if not getattr(calibrator, "_trt_base_init", False):
            raise TypeError("tensorrt.IInt8EntropyCalibrator2.__init__() must be called when overriding __init__")
        assert calibrator.get_batch_size() == 1
        cache = calibrator.read_calibration_cache()
        if cache:
            m.calibration["cache_hit"] = True
            return True
        while True:
            pointers = calibrator.get_batch(names)
            record(("get_batch", tuple(names)))
            if pointers is None:
                m.calibration["ended_with_none"] = True
                break
            assert len(pointers) == len(names) and all(isinstance(p, int) and p for p in pointers), pointers
            m.calibration["pointers"].append(list(pointers))
        calibrator.write_calibration_cache(memoryview(b"fake-calibration-table"))
        return True

    class IExecutionContext(_Strict):
        def __init__(self, engine) -> None:
            self._engine, self._addresses = engine, {}

        def set_tensor_address(self, name, memory):
            record(("set_tensor_address", name))
            self._addresses[name] = int(memory)
            return knobs.set_address_ok

        def execute_async_v3(self, stream_handle):
            return len(self._addresses) == self._engine.num_io_tensors

    class ICudaEngine(_Strict):
        def __init__(self, tensors) -> None:
            self._tensors = tensors

        num_io_tensors = property(lambda self: len(self._tensors))

        def _get(self, name):
            for t in self._tensors:
                if t["name"] == name:
                    return t
            raise RuntimeError(f"no tensor named {name}")

        def get_tensor_name(self, index):
            return self._tensors[index]["name"]

        def get_tensor_shape(self, name):
            return tuple(self._get(name)["shape"])

        def get_tensor_dtype(self, name):
            self._get(name)
            return m.DataType.FLOAT

        def get_tensor_mode(self, name):
            return m.TensorIOMode.INPUT if self._get(name)["mode"] == "input" else m.TensorIOMode.OUTPUT

        def create_execution_context(self, strategy=None):
            record(("create_execution_context",))
            return None if knobs.context_none else IExecutionContext(self)

    class Runtime(_Strict):
        def __init__(self, logger) -> None:
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            record(("deserialize_cuda_engine",))
            if knobs.deserialize_returns_none or not data.startswith(PLAN_MAGIC):
                return None
            tensors = [t for t in json.loads(data[len(PLAN_MAGIC):])["io"] if t["name"] not in knobs.engine_drops]
            for t in tensors:
                t["shape"] = list(knobs.engine_shapes.get(t["name"], t["shape"]))
            return ICudaEngine(tensors)

    for cls in (Logger, ITensor, INetworkDefinition, OnnxParser, ITimingCache, IBuilderConfig, IHostMemory, Builder,
                IExecutionContext, ICudaEngine, Runtime):
        setattr(m, cls.__name__, cls)
    if major < 11:
        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                self._trt_base_init = True

        m.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return m


def make_fake_torch_tensorrt(flavour: str = "2.10", *, zero_logits: bool = False, reference=None) -> types.ModuleType:
    """torch_tensorrt with the compile signatures of one release line:
    "2.9": ``use_explicit_typing`` defaults to False; "2.10" (2.10-2.12): it defaults to True and
    ``enabled_precisions`` beside it is the AssertionError 2.10+ raises; "2.13": both options are gone (strong typing).
    ``reference(*args)`` computes the "compiled" outputs; ``zero_logits`` zeroes the logit outputs (a known failure).
    """
    m = types.ModuleType("torch_tensorrt")
    m.__spec__ = importlib.machinery.ModuleSpec("torch_tensorrt", None)
    m.__version__ = {"2.9": "2.9.0", "2.10": "2.10.0", "2.13": "2.13.0"}[flavour]
    m.calls = []

    def check(kwargs):
        precisions = kwargs.get("enabled_precisions")
        explicit = kwargs.get("use_explicit_typing", flavour != "2.9")
        if flavour != "2.13" and explicit and precisions is not None and precisions != {__import__("torch").float32}:
            raise AssertionError(
                f"use_explicit_typing was set to True, however found that enabled_precisions was also specified (saw: "
                f"{precisions}, expected: dtype.f32, dtype.f4). enabled_precisions should not be used when use_explicit_typing=True"
            )

    def compiled(*args):
        outs = list(reference(*args))
        if zero_logits:
            outs[0], outs[3] = outs[0] * 0, outs[3] * 0
        return tuple(outs)

    def top_compile(module, ir="default", inputs=None, arg_inputs=None, kwarg_inputs=None, enabled_precisions=None, **kwargs):
        m.calls.append(("compile", {"ir": ir, "enabled_precisions": enabled_precisions, **kwargs}))
        check({"enabled_precisions": enabled_precisions, **kwargs})
        return compiled

    if flavour == "2.13":
        def dynamo_compile(exported_program, inputs=None, *, arg_inputs=None, disable_tf32=False, workspace_size=0,
                           min_block_size=5, **kwargs):
            raise NotImplementedError
    else:
        def dynamo_compile(exported_program, inputs=None, *, arg_inputs=None, enabled_precisions=None, disable_tf32=False,
                           workspace_size=0, min_block_size=5, use_explicit_typing=flavour != "2.9", **kwargs):
            raise NotImplementedError

    def save(module, file_path="", *, output_format="exported_program", inputs=None, arg_inputs=None, **kwargs):
        m.calls.append(("save", file_path))
        with open(file_path, "wb") as f:
            f.write(b"fake exported program")

    m.compile, m.save = top_compile, save
    m.dynamo = types.SimpleNamespace(compile=dynamo_compile)
    return m
