"""Lab studies: one-off measurements behind a design choice (not part of the product; may import anything).

    python -m lab.measure_w2     # the CDCL distribution distance: diagonal vs full Gaussian W2
    python -m lab.step_cost      # what one training step costs, part by part
"""
