"""Real-time audio-visual segmentation over ZeroMQ: sources -> context -> workers -> sink.

    from stream import PipelineConfig, run_pipeline
    report = run_pipeline(PipelineConfig(source={"kind": "synthetic", "seconds": 10},
                                         backend={"kind": "engine", "artifact": "out/engine/icf-lite.onnx"}))

The wire format is documented in docs/protocol.md; the CLI is ``icf-stream`` (stream/__main__.py).
"""

from .pipeline import PipelineConfig, PipelineError, run_pipeline

__all__ = ["PipelineConfig", "PipelineError", "run_pipeline"]
