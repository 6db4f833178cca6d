"""Configuration: the .properties reader, Pushlet's keys and defaults, refusals naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushpy.config import (
    IGNORED_KEYS,
    Config,
    known_keys,
    load_config,
    load_properties,
    parse_properties,
)
from pushpy.errors import UsageError

#: Pushlet 2.0.4's pushlet.properties (spec 10.1): every key with its shipped value, in the Java layout.
ORIGINAL_PUSHLET_PROPERTIES = Path(__file__).resolve().parents[1] / "data" / "pushlet-2.0.4.properties"

#: Spec 10.1: each key pushpy reads, its attribute and Pushlet 2.0.4's value.
PUSHLET_KEYS = [
    ("log.level", "log_level", 4),
    ("sources.activate", "sources_activate", True),
    ("session.id.generation", "session_id_generation", "randomstring"),
    ("session.id.size", "session_id_size", 10),
    ("session.timeout.mins", "session_timeout_mins", 5.0),
    ("queue.size", "queue_size", 24),
    ("queue.read.timeout.millis", "queue_read_timeout_millis", 20_000),
    ("queue.write.timeout.millis", "queue_write_timeout_millis", 20),
    ("listen.force.pull.all", "listen_force_pull_all", False),
    ("listen.force.pull.agents", "listen_force_pull_agents", ("safari",)),
    ("pull.refresh.timeout.millis", "pull_refresh_timeout_millis", 45_000),
    ("pull.refresh.wait.min.millis", "pull_refresh_wait_min_millis", 2_000),
    ("pull.refresh.wait.max.millis", "pull_refresh_wait_max_millis", 6_000),
    ("poll.refresh.timeout.millis", "poll_refresh_timeout_millis", 60_000),
    ("poll.refresh.wait.min.millis", "poll_refresh_wait_min_millis", 6_000),
    ("poll.refresh.wait.max.millis", "poll_refresh_wait_max_millis", 10_000),
]

#: Where pushpy's default differs from Pushlet's value, and why.
DEFAULT_DIFFERS = {
    # Spec 14.1 requirement 8: secure ids by default; "randomstring" stays available.
    "session_id_generation": "secure",
}

#: (properties text, expected mapping): the Java .properties rules, one case per rule.
PROPERTIES_CASES = [
    ("a=1", {"a": "1"}),
    ("a:1", {"a": "1"}),
    ("a 1", {"a": "1"}),
    ("a\t=\t1", {"a": "1"}),
    ("  a = 1", {"a": "1"}),
    ("a = b = c", {"a": "b = c"}),
    ("a : b : c", {"a": "b : c"}),
    ("a=", {"a": ""}),
    ("a", {"a": ""}),
    ("a=1 ", {"a": "1 "}),
    ("# comment\na=1", {"a": "1"}),
    ("! comment\na=1", {"a": "1"}),
    ("   # indented comment\na=1", {"a": "1"}),
    ("a=1 # not a comment", {"a": "1 # not a comment"}),
    ("\n\n  \na=1\n\n", {"a": "1"}),
    ("a=1\na=2", {"a": "2"}),
    ("a=one, \\\n    two", {"a": "one, two"}),
    ("a=x\\\n  \\\n  y", {"a": "xy"}),
    ("a=x\\\n# still the value", {"a": "x# still the value"}),
    ("a=x\\\n\nb=2", {"a": "x", "b": "2"}),
    ("a=x\\\\\nb=2", {"a": "x\\", "b": "2"}),
    ("a=x\\\\\\\n  y", {"a": "x\\y"}),
    ("a=tab\\there", {"a": "tab\there"}),
    ("a=new\\nline\\r\\f", {"a": "new\nline\r\f"}),
    ("a=caf\\u00e9", {"a": "café"}),
    ("a=\\=\\:\\#\\!\\ ", {"a": "=:#! "}),
    ("a=C:\\\\dir", {"a": "C:\\dir"}),
    ("a\\=b=c", {"a=b": "c"}),
    ("a\\:b:c", {"a:b": "c"}),
    ("key\\ with\\ spaces = v", {"key with spaces": "v"}),
    ("k\\u00e9y=v", {"kéy": "v"}),
    ("a=1\r\nb=2\r\n", {"a": "1", "b": "2"}),
]


@pytest.mark.parametrize(("text", "expected"), PROPERTIES_CASES)
def test_parse_properties_follows_java_rules(text: str, expected: dict[str, str]) -> None:
    """Each line-syntax rule of Java's Properties.load gives the same key and value."""
    assert parse_properties(text) == expected


def _escape(text: str, *, key: bool) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch in "\\=:#!":
            out.append("\\" + ch)
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif not ch.isprintable() or not ch.isascii():
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


TEXT = st.text(st.characters(min_codepoint=1, max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=20)


@given(st.dictionaries(TEXT.filter(bool), TEXT, max_size=5))
def test_parse_properties_reads_back_escaped_pairs(pairs: dict[str, str]) -> None:
    """Any keys and values written with Java escapes are read back exactly."""
    text = "\n".join(f"{_escape(k, key=True)}={_escape(v, key=False)}" for k, v in pairs.items())
    assert parse_properties(text) == pairs


def test_original_pushlet_properties_is_read_as_is() -> None:
    """Pushlet 2.0.4's own pushlet.properties loads, strictly, to its values; class-name keys are ignored."""
    config = load_config(ORIGINAL_PUSHLET_PROPERTIES, strict=True)
    for _key, attribute, value in PUSHLET_KEYS:
        assert getattr(config, attribute) == value, attribute
    assert config.sessionmanager_maxsessions == Config().sessionmanager_maxsessions


def test_every_pushlet_key_has_its_default() -> None:
    """With no file, each key of spec 10.1 has Pushlet 2.0.4's default (secure ids excepted, spec 14.1.8)."""
    config = Config()
    for _key, attribute, value in PUSHLET_KEYS:
        assert getattr(config, attribute) == DEFAULT_DIFFERS.get(attribute, value), attribute
    assert config.session_timeout == 300.0


def test_every_pushlet_key_is_known() -> None:
    """Every key of spec 10.1 is a pushpy key; the Java class-name keys are accepted and ignored."""
    keys = known_keys()
    for key, _attribute, _value in PUSHLET_KEYS:
        assert key in keys
    assert "sessionmanager.maxsessions" in keys
    config = Config.from_mapping({key: "x.y.Z" for key in IGNORED_KEYS}, strict=True)
    assert config == Config()


def test_known_keys_map_to_attributes() -> None:
    """Each known key names one Config attribute, '.' standing for '_'."""
    attributes = sorted(f.name for f in dataclasses.fields(Config))
    assert sorted(k.replace(".", "_") for k in known_keys()) == attributes


@pytest.mark.parametrize(("key", "value"), [
    ("queue.size", "many"),
    ("queue.size", "1"),
    ("session.timeout.mins", "five"),
    ("sources.activate", "maybe"),
    ("log.level", "4.5"),
    ("queue.overflow.policy", "explode"),
    ("session.id.generation", "guid"),
    ("pull.refresh.wait.min.millis", "9000"),
    ("poll.refresh.wait.max.millis", "10"),
])
def test_bad_value_raises_usage_error_naming_the_key(key: str, value: str) -> None:
    """A value that does not fit its key is refused with a message naming that key."""
    with pytest.raises(UsageError) as info:
        Config.from_mapping({key: value})
    assert key in str(info.value)


def test_values_are_converted_by_type() -> None:
    """Booleans, numbers and comma lists are converted; surrounding spaces do not matter."""
    config = Config.from_mapping({
        "sources.activate": " no ", "listen.force.pull.all": "TRUE", "queue.size": " 30 ",
        "session.timeout.mins": "0.5", "listen.force.pull.agents": "Safari, Opera ,,",
    })
    assert config.sources_activate is False
    assert config.listen_force_pull_all is True
    assert config.queue_size == 30
    assert config.session_timeout == 30.0
    assert config.listen_force_pull_agents == ("safari", "opera")


def test_unknown_key_is_ignored_unless_strict() -> None:
    """An unknown key is skipped by default and refused, with the closest key suggested, when strict."""
    assert Config.from_mapping({"session.timeout.min": "1"}) == Config()
    with pytest.raises(UsageError, match=r"'session\.timeout\.min'.*did you mean 'session\.timeout\.mins'"):
        Config.from_mapping({"session.timeout.min": "1"}, strict=True)


def test_load_config_layers_file_settings_and_overrides(tmp_path) -> None:
    """Settings win over the file and keyword overrides win over both."""
    path = tmp_path / "pushlet.properties"
    path.write_text("queue.size=30\nlog.level=2\nsession.timeout.mins=9\n")
    settings = {"log.level": "5", "session.timeout.mins": "7"}
    config = load_config(path, settings=settings, session_timeout_mins=1.0)
    assert (config.queue_size, config.log_level, config.session_timeout_mins) == (30, 5, 1.0)


def test_load_config_without_file_gives_defaults() -> None:
    """No file and no settings is the default configuration."""
    assert load_config() == Config()
    assert load_config(None, settings={}) == Config()


def test_load_properties_reads_latin_1_when_not_utf_8(tmp_path) -> None:
    """A file written in ISO-8859-1 (Java's own encoding for .properties) is read correctly."""
    path = tmp_path / "p.properties"
    path.write_bytes("city=Leeuw\u00e4rden\n".encode("latin-1"))
    assert load_properties(path) == {"city": "Leeuwärden"}
    path.write_bytes("city=Leeuw\u00e4rden\n".encode())
    assert load_properties(path) == {"city": "Leeuwärden"}


def test_unreadable_file_raises_usage_error_naming_it(tmp_path) -> None:
    """A missing file or a folder is refused with a message naming the path."""
    missing = tmp_path / "missing.properties"
    with pytest.raises(UsageError, match=r"missing\.properties"):
        load_config(missing)
    with pytest.raises(UsageError, match="cannot read"):
        load_properties(tmp_path)
