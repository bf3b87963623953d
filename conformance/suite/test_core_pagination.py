"""Core class: pagination of list operations — `limit` bounds and default, `nextCursor` exactly
when items follow, a traversal that returns each stable item once, foreign cursors refused.

The suite needs a list it knows the content of: it issues tokens (every node audits
`token.issued`, CPIN-SEC-021) and reads them back from the audit trail filtered by action and
by a start time taken from the node's own clock, so background activity does not touch them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.suite._core import SpecOperation, operations_of, problem_flaws
from spec import Spec

_TOKENS = 23  # more than the default page of 20
_BAD_LIMITS = ["0", "101", "-1", "abc", "1.5", "", "20x", "1e1"]
_MAX_PAGES = 40


@dataclass(frozen=True)
class KnownList:
    """A list whose items the suite made: token.issued events since `since`."""

    path: str
    params: dict[str, str]
    ids: list[str]


def _page(node: NodeClient, path: str, params: dict[str, Any]) -> tuple[list[Any], str | None]:
    response = node.get(path, params=params)
    expect_status(response, 200)
    body = body_of(response)
    assert isinstance(body, dict) and isinstance(body.get("items"), list), (
        f"GET {response.request.url} is not a list answer {{items, nextCursor}}"
    )
    cursor = body.get("nextCursor")
    return body["items"], cursor if isinstance(cursor, str) else None


def _traverse(
    node: NodeClient, path: str, params: dict[str, Any], limit: int
) -> Iterator[tuple[list[Any], str | None]]:
    """Each page from the first to the last (bounded)."""
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        items, cursor = _page(
            node, path, {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        )
        yield items, cursor
        if cursor is None:
            return
    raise AssertionError(f"GET {path} still gives nextCursor after {_MAX_PAGES} pages of {limit}")


@pytest.fixture(scope="module")
def known_list(node: NodeClient) -> KnownList:
    start = node.get("/v1/service-info", authenticated=False)
    expect_status(start, 200)
    since = body_of(start)["time"]
    for _ in range(_TOKENS):
        expect_status(node.token_response(), 200)
    params = {"action": "token.issued", "since": since}
    items, cursor = _page(node, "/v1/audit-events", {**params, "limit": 100})
    precondition(
        len(items) >= _TOKENS and cursor is None,
        f"the audit trail holds {len(items)} token.issued events since {since}, "
        f"after the suite was issued {_TOKENS} tokens",
    )
    return KnownList("/v1/audit-events", params, [item["eventId"] for item in items])


def _lists(spec: Spec, role: str, service_info: dict[str, Any]) -> list[SpecOperation]:
    return [op for op in operations_of(spec).served(role, service_info["classes"]) if op.is_list]


@pytest.mark.requirement("CPIN-CORE-011")
def test_limit_outside_1_to_100_answers_400_on_every_list(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec, contract: Contract
) -> None:
    flaws = []
    for op in _lists(spec, role, service_info):
        for limit in _BAD_LIMITS:
            response = node.get(op.path, params={"limit": limit})
            if response.status_code != 400:
                flaws.append(f"GET {op.path}?limit={limit} -> {response.status_code}")
            else:
                flaws += problem_flaws(response, contract)
        for size in (1, 100):
            items, _ = _page(node, op.path, {"limit": size})
            if len(items) > size:
                flaws.append(f"GET {op.path}?limit={size} returned {len(items)} items")
    assert not flaws, f"limit must be an integer from 1 to 100: {'; '.join(flaws[:6])}"


@pytest.mark.requirement("CPIN-CORE-011")
def test_pages_hold_at_most_limit_items_and_20_by_default(
    node: NodeClient, known_list: KnownList
) -> None:
    items, _ = _page(node, known_list.path, known_list.params)
    assert len(items) == 20, (
        f"without limit, a list of {len(known_list.ids)} items answered {len(items)} items; "
        "the default limit is 20"
    )
    for limit in (1, 3, 21, 100):
        items, _ = _page(node, known_list.path, {**known_list.params, "limit": limit})
        expected = min(limit, len(known_list.ids))
        assert len(items) == expected, (
            f"limit={limit} over {len(known_list.ids)} items answered {len(items)} items"
        )


@pytest.mark.requirement("CPIN-CORE-012")
def test_next_cursor_is_given_exactly_when_items_follow(
    node: NodeClient, known_list: KnownList
) -> None:
    total = len(known_list.ids)
    _, cursor = _page(node, known_list.path, {**known_list.params, "limit": total})
    assert cursor is None, f"a page of limit={total} holds all {total} items, yet has nextCursor"
    _, cursor = _page(node, known_list.path, {**known_list.params, "limit": total - 1})
    assert cursor is not None, f"limit={total - 1} over {total} items: nextCursor is missing"
    pages = list(_traverse(node, known_list.path, known_list.params, 5))
    for index in range(len(pages) - 1):
        assert pages[index + 1][0], (
            f"page {index + 1} of 5 gave nextCursor, but the page it points to is empty: "
            "nextCursor must be left out on the last page"
        )
    assert pages[-1][1] is None


@pytest.mark.requirement("CPIN-CORE-013")
def test_traversal_returns_each_item_exactly_once(node: NodeClient, known_list: KnownList) -> None:
    for limit in (4, 7):
        seen = [
            item["eventId"]
            for items, _ in _traverse(node, known_list.path, known_list.params, limit)
            for item in items
        ]
        twice = sorted({i for i in seen if seen.count(i) > 1})
        assert not twice, f"traversal with limit={limit} returned {twice} more than once"
        left_out = [i for i in known_list.ids if i not in seen]
        assert not left_out, f"traversal with limit={limit} left out {left_out}"


@pytest.mark.requirement("CPIN-CORE-013")
def test_every_list_traverses_without_duplicates_or_gaps(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec
) -> None:
    """Items that are in the list before and after a traversal must appear in it once."""
    checked = 0
    for op in _lists(spec, role, service_info):
        before, more = _page(node, op.path, {"limit": 100})
        if more is not None or len(before) < 2:
            continue
        limit = max(1, len(before) // 3)
        seen = [_key(item) for items, _ in _traverse(node, op.path, {}, limit) for item in items]
        after, _ = _page(node, op.path, {"limit": 100})
        stable = {_key(i) for i in before} & {_key(i) for i in after}
        twice = [i for i in set(seen) if seen.count(i) > 1]
        assert not twice, f"GET {op.path} (limit={limit}) returned an item twice: {twice[0][:200]}"
        left_out = stable - set(seen)
        assert not left_out, f"GET {op.path} (limit={limit}) left out {sorted(left_out)[0][:200]}"
        checked += 1
    assert checked, "no list of the node had 2 to 100 items to traverse"


def _key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, ensure_ascii=False)


def _altered(cursor: str) -> list[str]:
    def other(char: str) -> str:
        return "B" if char == "A" else "A"

    return [
        other(cursor[0]) + cursor[1:],
        cursor[:-1] + other(cursor[-1]),
        cursor + "A",
        cursor[: max(1, len(cursor) // 2)],
    ]


@pytest.mark.requirement("CPIN-CORE-014")
def test_cursors_the_node_did_not_issue_answer_400(
    node: NodeClient,
    known_list: KnownList,
    service_info: dict[str, Any],
    role: str,
    spec: Spec,
    contract: Contract,
) -> None:
    _, cursor = _page(node, known_list.path, {**known_list.params, "limit": 2})
    assert cursor is not None, f"limit=2 over {len(known_list.ids)} items: nextCursor is missing"
    sent: list[httpx.Response] = [
        node.get(known_list.path, params={**known_list.params, "limit": 2, "cursor": altered})
        for altered in _altered(cursor)
    ]
    sent += [
        node.get(op.path, params={"cursor": "cpin-conformance-not-a-cursor"})
        for op in _lists(spec, role, service_info)
    ]
    flaws = []
    for response in sent:
        if response.status_code != 400:
            flaws.append(f"GET {response.request.url} -> {response.status_code}")
        else:
            flaws += problem_flaws(response, contract)
    assert not flaws, f"cursors the node did not issue must answer 400: {'; '.join(flaws[:5])}"
