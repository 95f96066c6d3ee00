"""Training on your own simulations: detector-level H→4ℓ from weighted ROOT files, CLI only
(``python -m analyses.higgs4l_files.make_files``, then ``mfinfer train`` / ``mfinfer infer``)."""
