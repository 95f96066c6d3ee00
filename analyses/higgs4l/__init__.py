"""H → ZZ* → 2e2μ: AF vs M-flow posteriors for (a2, a3) (``python -m analyses.higgs4l.run``)."""
