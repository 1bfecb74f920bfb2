"""The rule registry: rule types by name, rules as typed objects, rule files (YAML) and rule sets.

A rule type is a class registered with :func:`register_rule_type`; it parses its parameters
(:meth:`RuleType.parse`), writes them back (:meth:`RuleType.dump`) and compiles a rule against a
:class:`kb.Context` into something that checks many rows at once (:class:`Compiled`).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import yaml

from .errors import KBError, RuleConfigError, UnknownRuleType
from .spec import Spec
from .yamlconf import Located, load_yaml, parse_yaml

if TYPE_CHECKING:
    from .context import Context, Rows

SEVERITIES = ("reject", "review")
RULES_DIR = Path(__file__).resolve().parent / "rules"
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_ID = r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]*"
# Fields every message template may use; rule types add their own (``RuleType.fields``).
COMMON_FIELDS = ("rule", "product", "category", "attribute", "value", "brand", "severity")
COMMON_KEYS = ("id", "type", "severity", "message", "description", "enabled", "mined")


@dataclass(frozen=True)
class Rule:
    """One configured rule: an id, a registered type, that type's parameters, a severity.

    ``severity`` is what a violation does to a prediction: ``reject`` or ``review`` (needs review).
    ``scope`` limits the rule to products in these category subtrees (empty: everywhere).
    """

    id: str
    type: str
    params: Any
    severity: str
    message: str | None = None
    description: str | None = None
    scope: tuple[str, ...] = ()
    source: str = "<python>"
    evidence: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def rule_type(self) -> type["RuleType"]:
        return rule_type(self.type)

    def to_dict(self) -> dict[str, Any]:
        """The rule as YAML-ready data (the inverse of loading it)."""
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.description:
            out["description"] = self.description
        if self.scope:
            out["category"] = self.scope[0] if len(self.scope) == 1 else list(self.scope)
        out.update(self.rule_type.dump(self.params))
        out["severity"] = self.severity
        if self.message:
            out["message"] = self.message
        if self.evidence:
            out["mined"] = dict(self.evidence)
        return out


class Compiled:
    """A rule bound to a context: checks rows in bulk, explains one row in words."""

    def __init__(self, rule: Rule, ctx: "Context"):
        self.rule, self.ctx = rule, ctx
        self.scope = ctx.scope_mask(rule)  # (C,) bool or None

    def check(self, rows: "Rows") -> np.ndarray:
        """(N,) bool: the rows that violate the rule."""
        mask = self._check(rows)
        if self.scope is not None:
            mask &= rows.take_category(self.scope, False)
        return mask

    def _check(self, rows: "Rows") -> np.ndarray:
        raise NotImplementedError

    def could_fire(self, rows: "Rows") -> np.ndarray:
        """(N,) bool: the rows on which the rule had teeth -- some value in this slot could have broken it
        (a functional attribute's slot that already holds a value; a measure whose range is known; an
        established brand). A rule that passes a row it could never have failed is not evidence for it.
        By default every row in the rule's scope."""
        mask = self._could_fire(rows)
        if self.scope is not None:
            mask &= rows.take_category(self.scope, False)
        return mask

    def _could_fire(self, rows: "Rows") -> np.ndarray:
        return np.ones(len(rows), bool)

    def details(self, rows: "Rows", i: int) -> dict[str, Any]:
        """Row-specific fields for the message of row ``i`` (a violation)."""
        return {}

    def message(self, rows: "Rows", i: int) -> str:
        fields = self.ctx.row_fields(rows, i)
        fields.update(rule=self.rule.id, severity=self.rule.severity)
        fields.update(self.rule.rule_type.message_fields(self.rule.params))
        fields.update(self.details(rows, i))
        template = self.rule.message or self.rule.rule_type.template
        return template.format_map(_Lenient(fields))


class _Lenient(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class RuleType:
    """Base class of rule types. Subclasses set ``name``, ``summary``, ``template`` and implement
    ``parse``, ``dump`` and ``compile``."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one sentence, plain language, for `attrgraph rules types`
    template: ClassVar[str]  # default message; {fields} from COMMON_FIELDS + ``fields``
    fields: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[tuple[str, ...]] = ()  # the type's own YAML keys (checked before parsing, for clear typos)
    default_severity: ClassVar[str] = "reject"
    scoped: ClassVar[bool] = True  # accepts ``category:`` to limit the rule to subtrees

    @classmethod
    def parse(cls, spec: Spec) -> Any:
        raise NotImplementedError

    @classmethod
    def dump(cls, params: Any) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def mentions(cls, params: Any) -> Iterable[tuple[str, str | None]]:
        """``(attribute, norm or None)`` pairs the rule names, so that predictions of values the
        catalog has never seen can still be matched against it."""
        return ()

    @classmethod
    def message_fields(cls, params: Any) -> dict[str, Any]:
        return {}

    @classmethod
    def compile(cls, rule: Rule, ctx: "Context") -> Compiled:
        raise NotImplementedError


RULE_TYPES: dict[str, type[RuleType]] = {}


def register_rule_type(cls: type[RuleType]) -> type[RuleType]:
    """Class decorator: make a rule type usable by name in YAML and Python."""
    for attr in ("name", "summary", "template"):
        if not getattr(cls, attr, None):
            raise KBError(f"rule type {cls.__name__} must set {attr!r}")
    if cls.name in RULE_TYPES and RULE_TYPES[cls.name] is not cls:
        raise KBError(f"rule type {cls.name!r} is already registered ({RULE_TYPES[cls.name].__qualname__})")
    if cls.default_severity not in SEVERITIES:
        raise KBError(f"rule type {cls.name!r}: default_severity must be one of {SEVERITIES}")
    RULE_TYPES[cls.name] = cls
    return cls


def rule_type(name: str) -> type[RuleType]:
    try:
        return RULE_TYPES[name]
    except KeyError:
        raise KBError(f"unknown rule type {name!r}; registered: {', '.join(sorted(RULE_TYPES))}") from None


# -- parsing ----------------------------------------------------------------------------------
def parse_rule(doc: Located, path: tuple, data: Any) -> Rule | None:
    """One rule from its YAML mapping; ``None`` when it says ``enabled: false``."""
    spec = Spec(doc, path, data)
    rid = spec.str("id", pattern=_ID)
    tname = spec.str("type")
    if tname not in RULE_TYPES:
        raise doc.error(path + ("type",), f"unknown rule type {tname!r}; registered: {', '.join(sorted(RULE_TYPES))}",
                        UnknownRuleType)
    rtype = RULE_TYPES[tname]
    valid = COMMON_KEYS + (("category",) if rtype.scoped else ()) + tuple(rtype.keys)
    unknown = [k for k in data if k not in valid]
    if rtype.keys and unknown:
        raise doc.error(path + (unknown[0],), f"unknown key {unknown[0]!r} for a {tname} rule; valid keys: "
                        + ", ".join(sorted(valid)))
    severity = spec.choice("severity", SEVERITIES, rtype.default_severity)
    message = spec.str("message", None)
    if message is not None:
        allowed = set(COMMON_FIELDS) | set(rtype.fields)
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(message) if f is not None]
        except ValueError as e:
            raise spec.error("message", f"not a valid message template: {e}") from None
        for f in names:
            base = f.split(".")[0].split("[")[0].split("!")[0]
            if base not in allowed:
                raise spec.error("message", f"unknown field {{{f}}}; this rule type knows: "
                                 + ", ".join("{" + a + "}" for a in sorted(allowed)))
    description = spec.str("description", None)
    enabled = spec.bool("enabled", True)
    scope: tuple[str, ...] = ()
    if rtype.scoped:
        cats = spec.str_list("category", None)
        scope = tuple(cats or ())
    evidence = spec.raw("mined", None)
    if evidence is not None and not isinstance(evidence, dict):
        raise spec.error("mined", "expected a mapping (evidence written by `attrgraph rules mine`)")
    params = rtype.parse(spec)
    spec.done()
    if not enabled:
        return None
    line = doc.line(path)
    source = f"{doc.file}:{line}" if line else doc.file
    return Rule(rid, tname, params, severity, message, description, scope, source, evidence)


def make_rule(type: str, *, id: str, **params: Any) -> Rule:
    """A rule from Python, checked exactly like YAML: ``make_rule("domain", id="g", attribute="gender",
    values=["Men", "Women"])``. ``if_`` may stand for the ``if`` key."""
    data = {"id": id, "type": type, **{k[:-1] if k.endswith("_") else k: v for k, v in params.items()}}
    rule = parse_rule(Located(f"<python rule {id!r}>", data), (), data)
    if rule is None:
        raise RuleConfigError(f"<python rule {id!r}>", None, "enabled", "a disabled rule cannot be added")
    return rule


class RuleSet:
    """Rules in order, with unique ids. Load YAML with :meth:`load`, add from Python with :meth:`add`."""

    def __init__(self, rules: Iterable[Rule] = ()):
        self._rules: dict[str, Rule] = {}
        for r in rules:
            self.append(r)

    def append(self, rule: Rule) -> Rule:
        if rule.id in self._rules:
            prev = self._rules[rule.id]
            raise RuleConfigError(rule.source, None, "id",
                                  f"rule id {rule.id!r} is already used (by the rule from {prev.source})")
        self._rules[rule.id] = rule
        return rule

    def add(self, type: str | Rule, *, id: str | None = None, **params: Any) -> Rule:
        """Add a :class:`Rule`, or build one through the registry: ``rs.add("domain", id=..., ...)``."""
        if isinstance(type, Rule):
            return self.append(type)
        if id is None:
            raise RuleConfigError("<python>", None, "id", "every rule needs an id")
        return self.append(make_rule(type, id=id, **params))

    def extend(self, rules: Iterable[Rule]) -> "RuleSet":
        for r in rules:
            self.append(r)
        return self

    def __add__(self, other: Iterable[Rule]) -> "RuleSet":
        return RuleSet(list(self) + list(other))

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules.values())

    def __len__(self) -> int:
        return len(self._rules)

    def __getitem__(self, id: str) -> Rule:
        return self._rules[id]

    def __contains__(self, id: object) -> bool:
        return id in self._rules

    def ids(self) -> list[str]:
        return list(self._rules)

    @classmethod
    def from_yaml(cls, text: str, file: str = "<string>") -> "RuleSet":
        return cls._from_located(parse_yaml(text, file))

    @classmethod
    def load(cls, path: str | Path) -> "RuleSet":
        return cls._from_located(load_yaml(path))

    @classmethod
    def _from_located(cls, doc: Located) -> "RuleSet":
        data = doc.data
        if data is None:
            raise doc.error((), "the file is empty; expected `rules:` with a list of rules")
        top = Spec(doc, (), data, "rules file")
        version = top.raw("version", 1)
        if version != 1:
            raise doc.error(("version",), f"unsupported version {version!r}; this kb reads version 1")
        top.raw("description", None)
        items = top.raw("rules")
        top.done()
        if not isinstance(items, list):
            raise doc.error(("rules",), "expected a list of rules")
        out = cls()
        for i, item in enumerate(items):
            rule = parse_rule(doc, ("rules", i), item)
            if rule is None:
                continue
            if rule.id in out:
                raise doc.error(("rules", i, "id"), f"rule id {rule.id!r} is already used "
                                f"(by the rule from {out[rule.id].source})")
            out.append(rule)
        return out

    def to_yaml(self, header: str | None = None) -> str:
        body = yaml.dump({"version": 1, "rules": [r.to_dict() for r in self]}, Dumper=_Dumper, sort_keys=False,
                         allow_unicode=True, width=4096, default_flow_style=None)
        if header:
            body = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + body
        return body

    def dump(self, path: str | Path, header: str | None = None) -> Path:
        p = Path(path)
        p.write_text(self.to_yaml(header), encoding="utf-8")
        return p


def shipped_rules() -> list[str]:
    """Names of the rule files shipped in ``kb/rules``."""
    return sorted(p.stem for p in RULES_DIR.glob("*.yaml"))


def load_rules(*sources: str | Path | RuleSet | Iterable[Rule]) -> RuleSet:
    """Rules from files (a path, or the name of a shipped file such as ``"default"``), rule sets or
    lists of rules, in order; ids must be unique across all of them."""
    out = RuleSet()
    for s in sources:
        if isinstance(s, (str, Path)):
            p = Path(s)
            if not p.exists() and isinstance(s, str) and not s.endswith((".yaml", ".yml")) and "/" not in s:
                p = RULES_DIR / f"{s}.yaml"
                if not p.exists():
                    raise RuleConfigError(str(s), None, "(file)", f"no such file, and no shipped rule file named {s!r}; "
                                          f"shipped: {', '.join(shipped_rules())}")
            rs = RuleSet.load(p)
        else:
            rs = s if isinstance(s, RuleSet) else RuleSet(s)
        for r in rs:
            if r.id in out:
                raise RuleConfigError(r.source, None, "id",
                                      f"rule id {r.id!r} is already used (by the rule from {out[r.id].source})")
            out.append(r)
    return out


def default_rules() -> RuleSet:
    """The shipped general rules (``kb/rules/default.yaml``): learned, catalog-independent."""
    return RuleSet.load(RULES_DIR / "default.yaml")
