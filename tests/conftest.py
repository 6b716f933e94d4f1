"""Shared by every suite under tests/.

The EDGEAI_NO_SKIP rule (a skip fails where `make` promises every prerequisite) is a pytest plugin
installed into the venv, tools/pytest_noskip, so that it applies to every suite, also those with a
conftest and pyproject of their own (onnx_service/, exporters/) and to Molecule's testinfra run.
"""
