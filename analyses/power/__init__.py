"""The paper's power experiment (``python -m analyses.power.run``)."""
