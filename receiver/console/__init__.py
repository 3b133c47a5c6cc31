"""The delivery console: pages to look at, filter and replay deliveries, and a JSON API.

``views.add_console`` adds it to the receiver's app (both runtimes do, with their store
and their way to run a delivery again); ``session`` holds who may use it.
"""
