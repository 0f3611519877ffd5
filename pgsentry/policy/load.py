"""Loading policy files: YAML -> validated models -> a compiled `Policy`.

Owns file discovery and order (a file, or a directory's *.yaml / *.yml sorted by name;
hidden files and editor backups such as `.00-x.yaml`, `.#x.yaml`, `x.yaml~` are skipped),
YAML parsing with line numbers, mapping validation errors to ONE line naming file, line
and field (`PolicyError`), merging several files into one policy, and compiling rules.
Must not evaluate statements.
"""

from __future__ import annotations

import difflib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pgsentry.policy.conditions import compile_conditions
from pgsentry.policy.decision import Action, HoldSpec
from pgsentry.policy.engine import CompiledRule, LocatedTest, Policy
from pgsentry.policy.model import (
    HoldOptions,
    Match,
    PolicyFile,
    Rule,
    TestCase,
    TestWho,
    Who,
    Window,
)
from pgsentry.policy.vocabulary import KINDS

Loc = tuple[str | int, ...]
SETTINGS = ("default", "default_message", "on_unparseable", "shadow", "timezone")

# which model a (integer-free) location path points into, for "unknown key" hints
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): PolicyFile,
    ("rules",): Rule,
    ("rules", "match"): Match,
    ("rules", "who"): Who,
    ("rules", "hold"): HoldOptions,
    ("rules", "who", "during"): Window,
    ("rules", "who", "outside"): Window,
    ("tests",): TestCase,
    ("tests", "who"): TestWho,
}


class PolicyError(Exception):
    """A policy that cannot be used. str() is one line: `file:line: field: problem`."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        problem = " ".join(self.problem.split())
        return f"{where}: {self.field}: {problem}" if self.field else f"{where}: {problem}"


def field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# Not policy files even though they may end in .yaml: hidden files (dotfiles, Emacs' `.#x`
# lock files, vim's `.x.swp`) and backups (`x.yaml~`, which has no .yaml suffix anyway).
_SKIPPED = (".*", "*~", "*.swp")


def _is_policy_file(p: Path) -> bool:
    if any(fnmatchcase(p.name, pattern) for pattern in _SKIPPED):
        return False
    return p.suffix in (".yaml", ".yml") and p.is_file()


def policy_files(path: Path) -> list[Path]:
    """The files a policy path stands for, in evaluation order."""
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if _is_policy_file(p)), key=lambda p: p.name)
        if not files:
            raise PolicyError(path, None, None, "no *.yaml or *.yml policy files in directory")
        return files
    if path.is_file():
        return [path]
    raise PolicyError(path, None, None, "no such file or directory")


def _walk(node: yaml.Node, loc: Loc, locs: dict[Loc, int], path: Path, stack: set[int]) -> None:
    if id(node) in stack:
        return
    locs.setdefault(loc, node.start_mark.line + 1)
    stack.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise PolicyError(
                    path,
                    line,
                    field_name((*loc, key)),
                    f"duplicate key (first on line {seen[key]})",
                )
            seen[key] = line
            locs[(*loc, key)] = line
            _walk(value_node, (*loc, key), locs, path, stack)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), locs, path, stack)
    stack.discard(id(node))


def read_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse one YAML document; also return the line of every key / list item."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(path, None, None, f"cannot read: {exc}") from None
    locs: dict[Loc, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, locs
        _walk(node, (), locs, path, set())
        return loader.construct_document(node), locs
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyError(path, line, None, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(path, None, None, f"YAML error: {exc}") from None
    finally:
        loader.dispose()


def line_of(locs: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the longest known prefix of `loc`."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in locs:
            return locs[loc[:n]]
    return None


def _error_from(exc: ValidationError, path: Path, locs: dict[Loc, int]) -> PolicyError:
    errors = exc.errors()
    err = errors[0]
    loc: Loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _MODELS.get(tuple(p for p in loc[:-1] if isinstance(p, str)))
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        msg = "unknown key" + (f", did you mean {close[0]!r}?" if close else "")
        if allowed:
            msg += f" (allowed: {', '.join(allowed)})"
    elif kind == "missing":
        msg = "required key is missing"
    elif isinstance(err.get("input"), str | int | float | bool) and kind != "value_error":
        msg += f" (got {err['input']!r})"
    if len(errors) > 1:
        msg += f" [and {len(errors) - 1} more error(s)]"
    return PolicyError(path, line_of(locs, loc), field_name(loc) or None, msg)


def read_policy_file(path: Path) -> tuple[PolicyFile, dict[Loc, int]]:
    data, locs = read_yaml(path)
    if not isinstance(data, dict):
        raise PolicyError(path, 1, None, "expected a mapping with at least `version: 1`")
    try:
        return PolicyFile.model_validate(data), locs
    except ValidationError as exc:
        raise _error_from(exc, path, locs) from None


def _hold_spec(opt: HoldOptions | None) -> HoldSpec:
    if opt is None:
        return HoldSpec()
    return HoldSpec(
        timeout_seconds=opt.timeout,
        approvals=opt.approvals,
        approvers=tuple(opt.approvers or ()),
        groups=tuple(opt.groups or ()),
        allow_self_approval=opt.allow_self_approval,
    )


def _windows(rule: Rule) -> list[tuple[str, int, Window]]:
    return [
        (name, i, w)
        for name in ("during", "outside")
        for i, w in enumerate(getattr(rule.who, name) or ())
    ]


def _expand_kinds(patterns: list[str] | None) -> frozenset[str] | None:
    if patterns is None:
        return None
    return frozenset(k for k in KINDS if any(fnmatchcase(k, p) for p in patterns))


def load_policy(path: Path) -> Policy:
    """Read, validate and compile the policy at `path` (a file or a directory)."""
    files = policy_files(path)
    parsed = [(f, *read_policy_file(f)) for f in files]
    settings: dict[str, tuple[Any, str]] = {}
    seen_ids: dict[str, str] = {}
    for f, pf, locs in parsed:
        for key in SETTINGS:
            value = getattr(pf, key)
            if value is None:
                continue
            if key in settings:
                first = settings[key][1]
                raise PolicyError(f, locs.get((key,)), key, f"already set in {first}")
            settings[key] = (value, f"{f}:{locs.get((key,))}")
        for i, rule in enumerate(pf.rules):
            if rule.id in seen_ids:
                raise PolicyError(
                    f,
                    line_of(locs, ("rules", i, "id")),
                    f"rules[{i}].id",
                    f"duplicate rule id {rule.id!r} (first in {seen_ids[rule.id]})",
                )
            seen_ids[rule.id] = f"{f}:{line_of(locs, ('rules', i))}"
    if "default" not in settings:
        raise PolicyError(path, None, "default", "no policy file sets `default` (allow/deny/hold)")
    zone: str | None = settings.get("timezone", (None, ""))[0]

    rules: list[CompiledRule] = []
    tests: list[LocatedTest] = []
    for f, pf, locs in parsed:
        for i, rule in enumerate(pf.rules):
            for name, j, w in _windows(rule):
                if w.timezone is None and zone is None:
                    loc: Loc = ("rules", i, "who", name, j)
                    raise PolicyError(
                        f,
                        line_of(locs, loc),
                        field_name(loc),
                        "time window needs a timezone (here or a top-level `timezone:`)",
                    )
            action = Action(rule.action)
            rules.append(
                CompiledRule(
                    id=rule.id,
                    action=action,
                    message=rule.message,
                    shadow=rule.shadow,
                    conditions=compile_conditions(
                        rule.match, rule.who, allow=action is Action.ALLOW, default_zone=zone
                    ),
                    hold=_hold_spec(rule.hold) if action is Action.HOLD else None,
                    description=rule.description,
                    source=f"{f}:{line_of(locs, ('rules', i))}",
                    kinds=_expand_kinds(rule.match.kinds),
                )
            )
        for i, case in enumerate(pf.tests):
            if case.rule not in (None, "default", "on_unparseable", *seen_ids):
                loc = ("tests", i, "rule")
                raise PolicyError(
                    f, line_of(locs, loc), field_name(loc), f"no rule has id {case.rule!r}"
                )
            tests.append(LocatedTest(case, f"{f}:{line_of(locs, ('tests', i))}"))

    default_action = Action(settings["default"][0])
    unparseable = Action(settings.get("on_unparseable", ("deny", ""))[0])
    return Policy(
        rules=rules,
        default=CompiledRule(
            "default",
            default_action,
            settings.get("default_message", (None, ""))[0],
            hold=HoldSpec() if default_action is Action.HOLD else None,
        ),
        on_unparseable=CompiledRule(
            "on_unparseable",
            unparseable,
            "pgsentry could not parse this statement, so it cannot be judged",
            hold=HoldSpec() if unparseable is Action.HOLD else None,
        ),
        shadow=bool(settings.get("shadow", (False, ""))[0]),
        source_paths=files,
        root=path,
        tests=tests,
    )
