"""Loading and validation: every error is one line naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_support import write

from pgsentry.policy import PolicyError, load_policy

BASE = "version: 1\ndefault: allow\n"


def error_of(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_minimal_policy_and_allow_all_fixture_load() -> None:
    fixture = Path(__file__).parents[1] / "policies" / "allow_all.yaml"
    p = load_policy(fixture)
    assert p.source_paths == (fixture,)
    assert p.default.action.value == "allow"
    assert p.on_unparseable.action.value == "allow"


def test_unknown_key_names_file_line_field_and_suggests(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: no-truncate
            action: deny
            match:
              kind: [truncate]
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:7: rules[0].match.kind: unknown key")
    assert "did you mean 'kinds'" in msg


def test_wrong_action_value(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "rules:\n  - id: x\n    action: dney\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:5: rules[0].action:")
    assert "'dney'" in msg


def test_missing_required_key_points_at_the_rule(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "rules:\n  - id: x\n    message: hi\n")
    assert error_of(path) == f"{path}:4: rules[0].action: required key is missing"


@pytest.mark.parametrize(
    ("snippet", "field", "words"),
    [
        ("who: {client_addrs: ['10.0.0.1/8']}", "rules[0].who.client_addrs", "host bits"),
        ("who: {client_addrs: ['example.com']}", "rules[0].who.client_addrs", "CIDR"),
        (
            "who: {during: [{hours: '9-17', timezone: UTC}]}",
            "rules[0].who.during[0].hours",
            "09:00",
        ),
        (
            "who: {during: [{days: [mon-frx], timezone: UTC}]}",
            "rules[0].who.during[0].days",
            "mon-fri",
        ),
        ("who: {during: [{timezone: Mars/Olympus}]}", "rules[0].who.during[0].timezone", "IANA"),
        ("who: {users: []}", "rules[0].who.users", "at least 1"),
        ("match: {relations: [accounts]}", "rules[0].match.relations", "*.accounts"),
        ("match: {where: [sometimes]}", "rules[0].match.where[0]", "'sometimes'"),
        ("match: {kinds: [drop_tabel]}", "rules[0].match.kinds", "matches no statement kind"),
        ("match: {kinds: ['alter_*_colum']}", "rules[0].match.kinds", "'alter_*_colum'"),
        ("match: {origins: [attic]}", "rules[0].match.origins", "not an origin"),
        ("hold: {approvals: 2}", "rules[0]", "only allowed with action: hold"),
    ],
)
def test_field_errors(tmp_path: Path, snippet: str, field: str, words: str) -> None:
    path = write(tmp_path, BASE + f"rules:\n  - id: r\n    action: deny\n    {snippet}\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:"), msg
    assert f": {field}: " in msg, msg
    assert words in msg, msg


def test_bad_rule_id_and_reserved_id(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "rules:\n  - id: No_Truncate\n    action: deny\n")
    assert "kebab-case" in error_of(path)
    path = write(tmp_path, BASE + "rules:\n  - id: default\n    action: deny\n")
    assert "reserved" in error_of(path)


def test_hold_options_parse_durations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + "rules:\n  - id: h\n    action: hold\n    hold: {timeout: 15m, approvals: 2}\n",
    )
    spec = load_policy(path).rules[0].hold
    assert spec is not None
    assert (spec.timeout_seconds, spec.approvals) == (900.0, 2)
    path = write(
        tmp_path, BASE + "rules:\n  - id: h\n    action: hold\n    hold: {timeout: soon}\n"
    )
    assert "rules[0].hold.timeout" in error_of(path)


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "rules:\n  - id: a\n    action: allow\n    action: deny\n")
    assert error_of(path) == f"{path}:6: rules[0].action: duplicate key (first on line 5)"


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "rules:\n  - id: [unclosed\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:") and "YAML syntax error" in msg


def test_empty_or_non_mapping_file(tmp_path: Path) -> None:
    assert "version: 1" in error_of(write(tmp_path, ""))
    assert "version: 1" in error_of(write(tmp_path, "- a\n- b\n"))
    assert "version" in error_of(write(tmp_path, "default: allow\n"))


def test_directory_order_and_cross_file_checks(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\nrules:\n  - {id: second, action: deny}\n", "20-b.yml")
    write(tmp_path, BASE + "rules:\n  - {id: first, action: allow}\n", "10-a.yaml")
    write(tmp_path, "not a policy", "README.md")
    p = load_policy(tmp_path)
    assert [r.id for r in p.rules] == ["first", "second"]
    assert [f.name for f in p.source_paths] == ["10-a.yaml", "20-b.yml"]

    write(tmp_path, "version: 1\nrules:\n  - {id: first, action: deny}\n", "30-c.yaml")
    msg = error_of(tmp_path)
    assert msg.startswith(f"{tmp_path / '30-c.yaml'}:3: rules[0].id: duplicate rule id 'first'")
    assert "10-a.yaml:4" in msg


def test_setting_given_twice_and_missing_default(tmp_path: Path) -> None:
    write(tmp_path, BASE, "a.yaml")
    write(tmp_path, "version: 1\ndefault: deny\n", "b.yaml")
    msg = error_of(tmp_path)
    assert msg.startswith(
        f"{tmp_path / 'b.yaml'}:2: default: already set in {tmp_path / 'a.yaml'}:2"
    )
    lone = tmp_path / "lone"
    lone.mkdir()
    write(lone, "version: 1\n")
    assert "no policy file sets `default`" in error_of(lone)


def test_window_needs_a_timezone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + "rules:\n  - id: w\n    action: deny\n    who:\n      during: [{days: [sat]}]\n",
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:7: rules[0].who.during[0]: time window needs a timezone")


def test_test_case_must_name_a_real_rule(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "tests:\n  - sql: select 1\n    expect: allow\n    rule: nope\n")
    assert error_of(path) == f"{path}:6: tests[0].rule: no rule has id 'nope'"


def test_test_case_time_needs_an_offset(tmp_path: Path) -> None:
    path = write(
        tmp_path, BASE + "tests:\n  - {sql: select 1, expect: allow, at: 2024-06-01T03:00:00}\n"
    )
    assert "time zone offset" in error_of(path)


def test_missing_path(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope") == f"{tmp_path / 'nope'}: no such file or directory"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no *.yaml" in error_of(empty)


def test_generation_increases(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    assert load_policy(path).generation < load_policy(path).generation


def test_directory_skips_hidden_files_and_editor_backups(tmp_path: Path) -> None:
    allow_all = "version: 1\ndefault: allow\nrules:\n  - {id: open-all, action: allow}\n"
    for name in (".00-hidden.yaml", ".#50-main.yaml", "50-main.yaml~", ".50-main.yaml.swp"):
        (tmp_path / name).write_text(allow_all)
    (tmp_path / "50-main.yaml").write_text(
        "version: 1\ndefault: deny\nrules:\n  - {id: ok, action: allow, match: {kinds: [select]}}\n"
    )
    p = load_policy(tmp_path)
    assert p.source_paths == (tmp_path / "50-main.yaml",)
    assert p.rule_ids == {"ok"} and p.default.action.value == "deny"


def test_directory_of_only_hidden_files_has_no_policy(tmp_path: Path) -> None:
    (tmp_path / ".00-hidden.yaml").write_text(BASE)
    assert "no *.yaml or *.yml policy files" in error_of(tmp_path)
