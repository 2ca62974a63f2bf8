"""Machine and library facts written into every report, so a number always says where it came from.

Standard library only at import time; torch is asked lazily (it is always there) and nothing
else is imported: versions come from package metadata, so bench/gpu.py stays free of pyzmq/PyAV.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata

LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "pyzmq", "av", "opencv-python-headless", "tensorrt", "torch_tensorrt", "triton", "matplotlib")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def gpu_facts() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    facts = {
        "gpu": props.name,
        "gpu_memory_GiB": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:  # the driver version is only visible through nvidia-smi; absent tool -> left out
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
        if smi.returncode == 0:
            facts["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return facts


def machine_info() -> dict:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # a loaded machine gives noisy numbers; the load average says how loaded it was
        "load_average": [round(v, 2) for v in load] if load else None,
        **gpu_facts(),
    }


def envelope(command: str, args: dict) -> dict:
    """The common head of every JSON report."""
    return {
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "libraries": library_versions(),
        "args": {k: (str(v) if not isinstance(v, (int, float, str, bool, list, type(None))) else v) for k, v in args.items()},
    }


def machine_line(doc: dict) -> str:
    m, lib = doc.get("machine", {}), doc.get("libraries", {})
    parts = [f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores, load {m.get('load_average')})"]
    if m.get("gpu"):
        parts.append(f"{m['gpu']} (CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')})")
    parts.append(", ".join(f"{k} {v}" for k, v in lib.items()))
    return "; ".join(parts)
