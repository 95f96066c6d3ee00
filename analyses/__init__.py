"""The analyses of the project, one subpackage each (power, higgs4l, lorenz).

Run them from the repository root as modules, e.g. ``python -m analyses.power.run``; their helpers
import each other as ``analyses.<name>.<module>``.
"""
