"""Page sizes are clamped; page tokens are opaque, signed and bound to their filters."""

from __future__ import annotations

import pytest

from server.core.errors import InvalidArgument
from server.core.pagination import PageTokens, page_size

TOKENS = PageTokens("test-secret-for-page-tokens-000000")
FILTERS = {"state": ["ACTIVE"], "city": "Lisbon"}


@pytest.mark.parametrize(
    ("requested", "served"), [(0, 20), (-5, 20), (7, 7), (100, 100), (5000, 100)]
)
def test_page_size_defaults_and_clamps(requested: int, served: int) -> None:
    assert page_size(requested) == served


def test_token_round_trips_its_cursor() -> None:
    cursor = {"draw_time": "2026-12-01T00:00:00+00:00", "id": "4d6b…"}
    token = TOKENS.encode(cursor, filters=FILTERS)
    assert TOKENS.decode(token, filters=dict(reversed(list(FILTERS.items())))) == cursor
    assert TOKENS.decode("", filters=FILTERS) is None


def test_token_for_other_filters_is_refused() -> None:
    token = TOKENS.encode({"id": "a"}, filters=FILTERS)
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(token, filters={**FILTERS, "city": "Porto"})
    assert raised.value.reason == "PAGE_TOKEN_INVALID"


@pytest.mark.parametrize("mutate", ["flip", "garbage", "other_secret"])
def test_tampered_or_foreign_token_is_refused(mutate: str) -> None:
    token = TOKENS.encode({"id": "a"}, filters=FILTERS)
    if mutate == "flip":
        token = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    elif mutate == "garbage":
        token = "%%%not-base64%%%"
    else:
        token = PageTokens("another-secret-000000000000000000").encode({"id": "a"}, filters=FILTERS)
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(token, filters=FILTERS)
    assert raised.value.reason == "PAGE_TOKEN_INVALID"
