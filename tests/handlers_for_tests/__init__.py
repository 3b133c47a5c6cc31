"""Handler modules used by the tests; each records its calls in the TEST_RECORD_PATH file."""
