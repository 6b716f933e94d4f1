"""A Grafana STAND-IN for the lab and tests: Grafana's provisioning and a subset of its HTTP API.

It is not Grafana (which cannot be obtained on the build machines): see README.md.
"""

from .app import VERSION, Settings, create_app

__all__ = ["VERSION", "Settings", "create_app"]
