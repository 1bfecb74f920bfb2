"""The rule-based knowledge layer: validates predictions, explains verdicts, audits asserted facts.

Plain data in, plain data out — no Neo4j, no torch::

    import kb
    catalog = kb.Catalog.from_dicts([...])             # or attrgraph.rules.load_catalog(graph)
    ctx = kb.Context(catalog, kb.load_rules("default", "myntra"))
    verdicts = kb.validate(kb.Predictions.from_dicts([...]), ctx)
    report = kb.audit(ctx)
    mined = kb.mine_rules(catalog)                      # a RuleSet; mined.dump("mined.yaml")

Rule types live in a registry (:data:`RULE_TYPES`); add one with :func:`register_rule_type`.
"""

from .catalog import Catalog, CatalogBuilder, CatalogSummary
from .context import Context
from .errors import (
    CatalogError, CategoryTreeError, KBError, PredictionError, RuleConfigError, UnknownRuleType,
)
from .predictions import BRAND_ATTRIBUTE, Predictions
from .registry import (
    RULE_TYPES, SEVERITIES, Compiled, Rule, RuleSet, RuleType, default_rules, load_rules, make_rule,
    register_rule_type, rule_type, shipped_rules,
)
from .tree import TreeProblem, TreeReport, check_category_tree
from .validate import AuditReport, Reason, Verdict, Verdicts, Violation, audit, validate

# the built-in rule types register themselves on import
from . import applicability, brand, cardinality, category_value, domain, logic, numeric, proposals  # noqa: E402,F401  isort: skip
from .mining import MinedImplication, MiningConfig, mine, mine_rules, mining_header  # noqa: E402

__all__ = [
    "AuditReport", "BRAND_ATTRIBUTE", "Catalog", "CatalogBuilder", "CatalogError", "CatalogSummary",
    "CategoryTreeError", "Compiled", "Context", "KBError", "MinedImplication", "MiningConfig", "PredictionError",
    "RULE_TYPES", "Reason", "Rule", "RuleConfigError", "RuleSet", "RuleType", "SEVERITIES", "TreeProblem",
    "TreeReport", "UnknownRuleType", "Verdict", "Verdicts", "Violation", "audit", "check_category_tree",
    "default_rules", "load_rules", "make_rule", "mine", "mine_rules", "mining_header", "register_rule_type",
    "rule_type", "shipped_rules", "validate",
]
