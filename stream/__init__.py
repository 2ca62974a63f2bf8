"""Real-time audio-visual segmentation over ZeroMQ: sources -> context -> workers -> sink.

    from stream import PipelineConfig, run_pipeline
    report = run_pipeline(PipelineConfig(source={"kind": "synthetic", "seconds": 10},
                                         backend={"kind": "engine", "artifact": "out/engine/icf-lite.onnx"}))

One frame at a time from Python (stream/api.py):

    from stream import Segmenter
    result = Segmenter()(frame_rgb, audio)    # result.mask, result.hears, result.scores

The wire format is documented in docs/protocol.md; the CLI is ``icf-stream`` (stream/cli/main.py).
"""

from stream.api import Segmentation, Segmenter
from stream.graph.pipeline import PipelineConfig, PipelineError, run_pipeline

__all__ = ["PipelineConfig", "PipelineError", "Segmentation", "Segmenter", "run_pipeline"]
