"""Static device buffers + pinned host staging for graph-replay backends (torch CUDA graph, TensorRT).

A replayed graph reads and writes fixed addresses, so inputs are copied INTO preallocated device
tensors and outputs read FROM them. Host copies go through pinned buffers so they are real async
DMA on the backend's stream rather than pageable copies with a hidden sync.
"""

from __future__ import annotations

import numpy as np


class DeviceIO:
    """inputs / outputs: name -> device tensor (any float dtype); host side is always float32."""

    def __init__(self, inputs: dict, outputs: dict) -> None:
        import torch

        self.inputs = inputs
        self.outputs = outputs
        self._pin_in = {n: torch.empty(t.shape, dtype=torch.float32, pin_memory=True) for n, t in inputs.items()}
        self._pin_out = {n: torch.empty(t.shape, dtype=torch.float32, pin_memory=True) for n, t in outputs.items()}

    def upload(self, arrays: dict[str, np.ndarray], stream) -> None:
        """Host arrays -> device input buffers, enqueued on ``stream`` (a torch.cuda.Stream)."""
        import torch

        with torch.cuda.stream(stream):
            for name, dev in self.inputs.items():
                pinned = self._pin_in[name]
                np.copyto(pinned.numpy(), arrays[name], casting="same_kind")
                dev.copy_(pinned, non_blocking=True)

    def load_device(self, tensors: dict, stream) -> None:
        """Device tensors -> input buffers (device-to-device; for callers that keep data on GPU)."""
        import torch

        with torch.cuda.stream(stream):
            for name, dev in self.inputs.items():
                dev.copy_(tensors[name], non_blocking=True)

    def download(self, stream) -> dict[str, np.ndarray]:
        """Device output buffers -> fresh host float32 arrays; waits for ``stream``."""
        import torch

        with torch.cuda.stream(stream):
            for name, dev in self.outputs.items():
                self._pin_out[name].copy_(dev, non_blocking=True)
        stream.synchronize()
        # Copy out of the pinned buffers: the next call overwrites them.
        return {name: p.numpy().copy() for name, p in self._pin_out.items()}
