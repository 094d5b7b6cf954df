import pytest

from esi_views.scopes import normalize_scopes, scopes_to_string


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", frozenset()),
        (None, frozenset()),
        ("a b", {"a", "b"}),
        ("  a   b  ", {"a", "b"}),
        (["a", "b"], {"a", "b"}),
        (("a b", "c"), {"a", "b", "c"}),
        ({"a"}, {"a"}),
    ],
)
def test_normalize_scopes_accepts_strings_and_iterables(given, expected):
    assert normalize_scopes(given) == frozenset(expected)


@pytest.mark.parametrize("bad", [b"a b", [1], ["a", None]])
def test_normalize_scopes_rejects_non_strings(bad):
    with pytest.raises(TypeError):
        normalize_scopes(bad)


def test_scopes_to_string_is_sorted_and_space_joined():
    assert scopes_to_string(["b", "a", "a"]) == "a b"
