"""The lab harness: a usable Docker engine, the lab image set and the lab registry.

Used by `make images`, `make lab` and the Molecule scenarios. Run it as `python -m edgelab`.
"""
