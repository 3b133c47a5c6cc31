"""Handler modules used by the tests; each records what it did in a file named by settings."""
