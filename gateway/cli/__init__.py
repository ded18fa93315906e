"""The `vericam` command: one module per command group, each a thin shell over governance, provisioning and storage.

`main.py` assembles the groups that installed packages register through entry points, so the
gateway's commands never import the simulator's (pyproject.toml, `vericam.commands`).
"""
