"""The one URL masker: nothing that can hold a secret survives, the rest reads as before."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.urls import mask_url

KEY = "Zm9vYmFyYmF6cXV4cXV1eA=="


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"https://fn.example.net/api/allocate?code={KEY}&x=1",
            "https://fn.example.net/api/allocate?****",
        ),
        ("http://127.0.0.1:7071/api/allocate", "http://127.0.0.1:7071/api/allocate"),
        (f"https://user:{KEY}@host:8443/p?sig=s#frag", "https://****@host:8443/p?****"),
        ("https://fn/api/allocate?", "https://fn/api/allocate?****"),
        ("https://a.net/api/x?code=k#frag", "https://a.net/api/x?****"),
        ("http://[::1", "<unparseable URL>"),
    ],
)
def test_the_query_user_information_and_fragment_are_masked(url: str, shown: str) -> None:
    """As DPS shows a webhook URL: the query is `?****`; credentials and fragments go too."""
    assert mask_url(url) == shown


@given(st.text(min_size=8, alphabet=st.characters(blacklist_categories=("Cs",))))
def test_no_query_value_survives(secret: str) -> None:
    """Whatever the key, it never appears in the masked URL."""
    url = f"https://fn.example.net/api/allocate?code={secret}"
    assert "code=" not in mask_url(url)
