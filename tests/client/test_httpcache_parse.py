"""The sans-IO cache's header parsers: each test names the RFC section it follows."""

from __future__ import annotations

import ast
import calendar
from pathlib import Path

import pytest

from client._httpcache import (
    CachePolicy,
    CachePolicyError,
    credential_digest,
    parse_cache_control,
    secret_free_url,
)
from client._httpcache._headers import (
    DELTA_MAX,
    list_members,
    parse_age,
    parse_delta,
    parse_http_date,
    vary_value,
    weak_match,
)
from client._httpcache._range import if_range_allows, select_range

AUG_18_2050 = float(calendar.timegm((2050, 8, 18, 2, 1, 18, 0, 0, 0)))


def test_cache_control_names_are_case_insensitive_and_quotes_removed():
    """RFC 9111 §5.2: directive names compare case-insensitively; both argument forms accepted."""
    assert parse_cache_control('Private, MAX-AGE=30, no-cache="Set-Cookie"') == {
        "private": None,
        "max-age": "30",
        "no-cache": "Set-Cookie",
    }
    assert parse_cache_control('max-age="3600"') == {"max-age": "3600"}


def test_cache_control_quoted_commas_do_not_split():
    """RFC 9110 §5.6.4: a comma inside a quoted-string is not a list separator (cc-parse)."""
    assert parse_cache_control('extension="max-age=3600, x", max-age=1') == {
        "extension": "max-age=3600, x",
        "max-age": "1",
    }
    assert parse_cache_control('a="q\\"uote, d", b') == {"a": 'q"uote, d', "b": None}


def test_cache_control_first_duplicate_wins_across_lines():
    """RFC 9111 §4.2.1: with several values for a directive, the first occurrence is used."""
    assert parse_cache_control(["max-age=1800, max-age=1", "max-age=5"])["max-age"] == "1800"


def test_cache_control_no_cache_most_restrictive_wins():
    """RFC 9111 §4.2.1: conflicting directives, most restrictive: unqualified no-cache beats a field list."""
    assert parse_cache_control('no-cache="a", no-cache="b"')["no-cache"] == "a, b"
    assert parse_cache_control('no-cache="a", no-cache')["no-cache"] is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("max-age =3600", id="space-before-equals"),
        pytest.param("max-age= 3600", id="space-after-equals"),
        pytest.param("=3600", id="no-name"),
        pytest.param("m@x-age=3600", id="not-a-token"),
    ],
)
def test_malformed_cache_control_members_are_skipped(value):
    """RFC 9111 §5.2: cache-directive = token [ "=" ( token / quoted-string ) ]; anything else is ignored."""
    assert "max-age" not in parse_cache_control(value + ", public")
    assert "public" in parse_cache_control(value + ", public")


def test_unterminated_quote_swallows_the_rest_of_the_line():
    """RFC 9110 §5.6.4: an unterminated quoted-string runs to the end; nothing after it parses."""
    assert parse_cache_control(['max-age="36, public', "no-store"]) == {"no-store": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("3600", 3600),
        ("003600", 3600),
        ("2147483647", 2147483647),
        ("2147483648", DELTA_MAX),
        ("99999999999999999999999", DELTA_MAX),
        ("-3600", None),
        ("3600.0", None),
        ("a3600", None),
        ("3600a", None),
        ("'3600'", None),
        ("", None),
        ("٣٦٠٠", None),
    ],
)
def test_delta_seconds(value, expected):
    """RFC 9111 §1.2.2: delta-seconds = 1*DIGIT, capped at 2^31; anything else is invalid."""
    assert parse_delta(value) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(["7200"], 7200, id="plain"),
        pytest.param(["7200, 0"], 7200, id="first-member-wins"),
        pytest.param(["0, 7200"], 0, id="first-member-wins-fresh"),
        pytest.param(["7200", "0"], 7200, id="first-line-wins"),
        pytest.param(["0", "7200"], 0, id="first-line-wins-fresh"),
        pytest.param(["abc"], 0, id="non-numeric-ignored"),
        pytest.param(["-7200"], 0, id="negative-ignored"),
        pytest.param(["7200.0"], 0, id="float-ignored"),
        pytest.param(["7200;foo=bar"], 0, id="parameter-invalid"),
        pytest.param(["2147483649"], DELTA_MAX, id="capped"),
        pytest.param([], 0, id="absent"),
    ],
)
def test_age_value(lines, expected):
    """RFC 9111 §5.1: Age is delta-seconds; with several values the first is used, an invalid one ignored."""
    assert parse_age(tuple(("Age", v) for v in lines)) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 18 Aug 2050 02:01:18 GMT",
        "THU, 18 Aug 2050 02:01:18 GMT",
        "Thu, 18 AUG 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02:01:18 gMT",
        "Thursday, 18-Aug-50 02:01:18 GMT",
        "Thu Aug 18 02:01:18 2050",
        "  Thu, 18 Aug 2050 02:01:18 GMT ",
    ],
)
def test_http_date_formats(value):
    """RFC 9110 §5.6.7: IMF-fixdate, rfc850-date and asctime-date are all accepted."""
    assert parse_http_date(value) == AUG_18_2050


def test_asctime_single_digit_day():
    """RFC 9110 §5.6.7: asctime pads a one-digit day with a space."""
    assert parse_http_date("Mon Aug  8 02:01:18 2050") == AUG_18_2050 - 10 * 86400


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 2050 02:01:18 AEST",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
        "Thu, 31 Feb 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 25:01:18 GMT",
        "Xyz, 18 Aug 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02:01:18 GMT, Thu, 18 Aug 2050 02:01:19 GMT",
        "",
    ],
)
def test_invalid_http_dates(value):
    """RFC 9111 §5.3: anything but the three formats is invalid (and an invalid Expires is in the past)."""
    assert parse_http_date(value) is None


def test_list_members_and_vary_normalisation():
    """RFC 9111 §4.1: selecting headers match across line combining and list whitespace."""
    assert list_members(["a, b", " ,c ", ""]) == ["a", "b", "c"]
    assert vary_value("foo", ["1", "2"]) == vary_value("foo", ["1, 2"]) == vary_value("foo", [" 1 ,2 "])
    assert vary_value("foo", ["1"]) != vary_value("foo", ["2"])
    assert vary_value("foo", []) is None and vary_value("foo", [""]) == ""
    assert vary_value("accept-language", ["en, de"]) == vary_value("accept-language", ["De,EN"])


def test_weak_comparison():
    """RFC 9110 §8.8.3.2: weak comparison ignores the W/ prefix."""
    assert weak_match('W/"a"', '"a"') and weak_match('"a"', '"a"') and not weak_match('"a"', '"b"')


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        ("bytes=0-1", 11, ("partial", 0, 1)),
        ("bytes=1-", 11, ("partial", 1, 10)),
        ("bytes=-1", 11, ("partial", 10, 10)),
        ("bytes=-20", 11, ("partial", 0, 10)),
        ("bytes=5-100", 11, ("partial", 5, 10)),
        ("bytes=11-", 11, ("unsatisfiable", 0, 0)),
        ("bytes=-0", 11, ("unsatisfiable", 0, 0)),
        ("bytes=0-1,3-4", 11, ("full", 0, 0)),
        ("bytes=3-1", 11, ("full", 0, 0)),
        ("items=0-1", 11, ("full", 0, 0)),
        ("bytes=a-b", 11, ("full", 0, 0)),
        ("bytes=", 11, ("full", 0, 0)),
    ],
)
def test_range_selection(value, length, expected):
    """RFC 9110 §14.1.2 / §14.2: one satisfiable range, none satisfiable, or ignore the header."""
    assert select_range(value, length) == expected


def test_if_range():
    """RFC 9110 §13.1.5: If-Range needs a strong match of the entity tag, or the exact date."""
    lm = "Thu, 18 Aug 2050 02:01:18 GMT"
    assert if_range_allows(None, None, None)
    assert if_range_allows('"a"', '"a"', None)
    assert not if_range_allows('W/"a"', 'W/"a"', None)
    assert not if_range_allows('"a"', '"b"', None)
    assert if_range_allows(lm, None, lm)
    assert not if_range_allows(lm, '"a"', "Thu, 18 Aug 2050 02:01:17 GMT")


def test_secret_free_url_and_credential_digest():
    """Keys never hold a secret: credential-like query values and credentials become digests."""
    url = secret_free_url("http://h/x?api_key=abc&limit=5&token=t0k")
    assert "abc" not in url and "t0k" not in url and "limit=5" in url
    assert credential_digest() == credential_digest(None, "") == ""
    assert "demo-key" not in credential_digest("demo-key")
    assert credential_digest("a") != credential_digest("b")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_entries", 0),
        ("max_entries", True),
        ("max_entry_bytes", 1.5),
        ("max_total_bytes", -1),
        ("stale_if_error", -1),
        ("stale_if_error", float("nan")),
        ("stale_if_error", "5"),
        ("heuristic_fraction", 2),
        ("heuristic_max", float("inf")),
        ("methods", "GET"),
    ],
)
def test_policy_rejects_bad_values_naming_the_field(field, value):
    """A bad policy value is an error that names the field."""
    with pytest.raises(CachePolicyError, match=f"CachePolicy.{field}"):
        CachePolicy(**{field: value})


def test_policy_errors_are_config_errors():
    """The client's one exception tree: a bad cache policy is a ConfigError (a ValueError)."""
    from client._errors import ConfigError

    assert issubclass(CachePolicyError, ConfigError) and issubclass(CachePolicyError, ValueError)


def test_policy_normalises_methods_and_durations():
    """Methods are upper-cased; durations may be timedelta."""
    from datetime import timedelta

    policy = CachePolicy(methods={"get"}, stale_if_error=timedelta(minutes=1))
    assert policy.methods == frozenset({"GET"}) and policy.stale_if_error == 60.0


def test_the_cache_imports_no_io_library():
    """Sans-IO: the package imports only the standard library and the client's clock."""
    allowed_local = {"_clock", "_errors"}  # both import neither an HTTP library nor sockets
    root = Path(__file__).parents[2] / "client" / "_httpcache"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
                assert not {"requests", "httpx", "urllib3", "aiohttp", "socket"} & set(names), path
            elif isinstance(node, ast.ImportFrom):
                if node.level == 2:
                    assert node.module in allowed_local, (path, node.module)
                elif node.level == 0:
                    top = (node.module or "").split(".")[0]
                    assert top not in {"requests", "httpx", "urllib3", "aiohttp", "socket", "client"}, path


def test_long_field_values_are_not_memoised():
    """Bounded memory: a server's huge field value is parsed but never pinned in a parser's memo."""
    from client._httpcache import _headers

    cc_before = _headers._parse_cc_line_memo.cache_info().currsize
    date_before = _headers._parse_http_date.cache_info().currsize
    assert parse_cache_control("max-age=1, " + "x" * 100_000) == {"max-age": "1", "x" * 100_000: None}
    assert parse_http_date("Thu, 18 Aug 2050 02:01:18 GMT" + " " * 100_000) is None
    assert _headers._parse_cc_line_memo.cache_info().currsize == cc_before
    assert _headers._parse_http_date.cache_info().currsize == date_before
