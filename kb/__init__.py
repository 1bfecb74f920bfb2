"""The rule-based knowledge layer (validation, explanations, audits) — see issue 5."""
