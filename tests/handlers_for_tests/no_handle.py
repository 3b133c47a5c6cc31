"""A module that forgot to define ``handle``."""

HANDLE = None
