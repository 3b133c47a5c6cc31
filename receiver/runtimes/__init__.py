"""Where the receiver runs: each runtime wires the edge, a store and a way to run handlers.

``runtimes.local``: a SQLite store and a worker process (``scripts/serve_local.py``,
the tests, the benchmark). ``runtimes.modal``: a ``modal.Dict`` and the spawned ``process``
function (``webhook_app.py``). Neither imports the other.
"""
