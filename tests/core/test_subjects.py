"""Subject matching and the subject index (spec 8.1, 14.1.23)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pushpy.core.subjects import SubjectIndex, Subscription, split_subjects


def test_split_subjects_drops_empty_parts():
    """A comma list splits into its non-empty parts, in order."""
    assert split_subjects("/a,/b") == ("/a", "/b")
    assert split_subjects(",/a,,/b,") == ("/a", "/b")
    assert split_subjects(",") == ()
    assert split_subjects("") == ()


def test_prefix_matching_is_plain_string_prefix():
    """``/stocks`` matches ``/stocks/aex`` and also ``/stocksXYZ`` but not ``/stock``."""
    sub = Subscription("sid01", "/stocks")
    assert sub.matches("/stocks")
    assert sub.matches("/stocks/aex")
    assert sub.matches("/stocksXYZ")
    assert not sub.matches("/stock")
    assert not sub.matches("/other/stocks")


def test_event_without_subject_never_matches():
    """Events with no or an empty subject match no subscription."""
    sub = Subscription("sid01", "/")
    assert not sub.matches(None)
    assert not sub.matches("")
    index = SubjectIndex()
    index.add("owner", sub)
    assert index.match(None) == {}
    assert index.match("") == {}


def test_comma_list_is_one_subscription():
    """``/a,/b`` is one subscription with one sid matching either prefix."""
    index = SubjectIndex()
    sub = Subscription("sid01", "/a,/b", "lbl")
    index.add("s1", sub)
    assert sub.prefixes == ("/a", "/b")
    assert index.match("/a/x") == {"s1": sub}
    assert index.match("/b") == {"s1": sub}
    assert index.match("/c") == {}


def test_comma_list_with_overlapping_parts_matches_once():
    """A comma list whose parts both match yields one match for its owner."""
    index = SubjectIndex()
    sub = Subscription("sid01", "/a,/a/b,/a")
    index.add("s1", sub)
    assert index.match("/a/b/c") == {"s1": sub}
    assert len(index) == 2


def test_at_most_one_match_per_owner():
    """Several matching subscriptions of one owner give that owner one match."""
    index = SubjectIndex()
    subs = [Subscription(f"sid{i}", "/stocks") for i in range(3)]
    for sub in subs:
        index.add("s1", sub)
    other = Subscription("other", "/stocks/aex")
    index.add("s2", other)
    found = index.match("/stocks/aex")
    assert set(found) == {"s1", "s2"}
    assert found["s1"] in subs
    assert found["s2"] is other


def test_most_specific_prefix_wins():
    """When several subscriptions of one owner match, the longest matching prefix wins."""
    index = SubjectIndex()
    broad = Subscription("broad", "/")
    middle = Subscription("middle", "/x,/stocks")
    narrow = Subscription("narrow", "/stocks/aex")
    for sub in (broad, narrow, middle):
        index.add("s1", sub)
    assert index.match("/stocks/aex/ahold")["s1"] is narrow
    assert index.match("/stocks/nyse")["s1"] is middle
    assert index.match("/weather")["s1"] is broad


def test_remove_forgets_subscription_and_unused_prefixes():
    """Removing the last holder of a prefix removes the prefix from the index."""
    index = SubjectIndex()
    a = Subscription("a", "/a,/b")
    b = Subscription("b", "/a")
    index.add("s1", a)
    index.add("s2", b)
    assert sorted(index.subjects()) == ["/a", "/b"]
    index.remove(a)
    assert sorted(index.subjects()) == ["/a"]
    assert index.match("/a") == {"s2": b}
    assert index.match("/b") == {}
    index.remove(b)
    assert len(index) == 0
    assert index.match("/a") == {}


def test_remove_unknown_subscription_is_ignored():
    """Removing a subscription twice or one never added changes nothing."""
    index = SubjectIndex()
    a = Subscription("a", "/a")
    index.add("s1", a)
    index.remove(Subscription("zz", "/a"))
    index.remove(Subscription("zz", "/nothing"))
    assert index.match("/a") == {"s1": a}
    index.remove(a)
    index.remove(a)
    assert len(index) == 0


def test_label_is_none_when_empty():
    """An empty label is stored as no label."""
    assert Subscription("a", "/a", "").label is None
    assert Subscription("a", "/a", "x").label == "x"


# -- property: the index agrees with a brute-force matcher --------------------

ALPHABET = "/ab,"
subjects = st.text(alphabet=ALPHABET, min_size=0, max_size=6)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), subjects),
        st.tuples(st.just("remove"), st.integers(0, 30)),
        st.tuples(st.just("match"), st.text(alphabet="/ab", max_size=7)),
    ),
    max_size=60,
)


def brute_force(live: list[tuple[str, Subscription]], subject: str) -> dict[str, int]:
    """Owner -> length of the longest prefix of any of its subscriptions matching ``subject``."""
    best: dict[str, int] = {}
    if not subject:
        return best
    for owner, sub in live:
        for prefix in sub.prefixes:
            if subject.startswith(prefix):
                best[owner] = max(best.get(owner, -1), len(prefix))
    return best


def check_consistent(index: SubjectIndex, live: list[tuple[str, Subscription]]) -> None:
    prefixes = {p for _, sub in live for p in sub.prefixes}
    assert set(index.subjects()) == prefixes
    assert len(index) == len(prefixes)
    lengths: dict[int, int] = {}
    for p in prefixes:
        lengths[len(p)] = lengths.get(len(p), 0) + 1
    assert index._lengths == lengths
    assert index._sorted_lengths == tuple(sorted(lengths, reverse=True))


@settings(max_examples=300, deadline=None)
@given(ops)
def test_index_agrees_with_brute_force(operations):
    """Random add/remove sequences keep the index equal to a brute-force matcher."""
    index = SubjectIndex()
    live: list[tuple[str, Subscription]] = []
    added: list[Subscription] = []
    for n, op in enumerate(operations):
        if op[0] == "add":
            owner = f"s{op[1]}"
            sub = Subscription(f"sid{n}", op[2])
            index.add(owner, sub)
            live.append((owner, sub))
            added.append(sub)
        elif op[0] == "remove":
            if not added:
                continue
            sub = added[op[1] % len(added)]
            index.remove(sub)
            live = [(o, s) for o, s in live if s is not sub]
        else:
            subject = op[1]
            found = index.match(subject)
            expected = brute_force(live, subject)
            assert set(found) == set(expected)
            by_sub = {id(s): o for o, s in live}
            for owner, sub in found.items():
                assert by_sub[id(sub)] == owner
                assert sub.matches(subject)
                longest = max(len(p) for p in sub.prefixes if subject.startswith(p))
                assert longest == expected[owner]
        check_consistent(index, live)
    for _, sub in live:
        index.remove(sub)
    check_consistent(index, [])
