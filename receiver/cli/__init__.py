"""What the scripts in ``scripts/`` share; nothing here is imported by a runtime.

``cli.setup``: exit codes, errors, the Modal CLI and the local state file (set-up scripts).
``cli.operator``: opening the right store and showing deliveries. ``cli.replay``: re-running
dead deliveries.
"""
