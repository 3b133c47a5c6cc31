"""The secret check: constant-time, several secrets accepted for rotation."""

import pytest

from receiver.auth import secret_matches


@pytest.mark.parametrize(
    ("presented", "accepted", "expected"),
    [
        ("s3cret", ("s3cret",), True),
        ("new", ("old", "new"), True),
        ("old", ("old", "new"), True),
        ("s3cre", ("s3cret",), False),  # a prefix is not the secret
        ("s3cretX", ("s3cret",), False),
        ("S3CRET", ("s3cret",), False),
        ("", ("s3cret",), False),
        (None, ("s3cret",), False),
        ("s3cret", (), False),
        ("ключ-🔑", ("ключ-🔑",), True),
        ("ключ-🔑", ("ключ",), False),
    ],
)
def test_secret_matches_exactly_one_of_the_accepted_secrets(presented, accepted, expected):
    assert secret_matches(presented, accepted) is expected


def test_every_accepted_secret_is_compared_even_after_a_match(monkeypatch):
    compared = []
    import hmac

    real = hmac.compare_digest

    def spy(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert secret_matches("first", ("first", "second", "third"))
    assert compared == [b"first", b"second", b"third"]
