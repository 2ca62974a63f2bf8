"""ICF training: SynthAVS and AVSBench data, ICF losses (segmentation, SC, CDCL), the official
metrics, the trainer (``icf-train fit``), evaluation (``icf-train eval``) and the experiment script.

Imports torch. The stream never imports this package; the torch-free SynthAVS generator it uses
lives in the top-level ``synthavs`` package.
"""
