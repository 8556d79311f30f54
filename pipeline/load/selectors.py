"""Parsing and validating a metav1.LabelSelector into the model's LabelSelector."""

from __future__ import annotations

from ..model.selectors import OPERATORS, LabelSelector, Requirement
from .validation import check_label_key, check_label_value


def parse_selector(obj, errors, path: str) -> LabelSelector:
    """Parses and validates a LabelSelector; problems go to `errors`."""
    if obj is None:
        return LabelSelector()
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return LabelSelector()
    reqs: list[Requirement] = []
    for key in obj:
        if key not in ("matchLabels", "matchExpressions"):
            errors.add(f"{path}.{key}", "unknown field")
    match_labels = obj.get("matchLabels") or {}
    if not isinstance(match_labels, dict):
        errors.add(f"{path}.matchLabels", "must be a map of strings")
        match_labels = {}
    for k, v in match_labels.items():
        check_label_key(k, errors, f"{path}.matchLabels")
        if not isinstance(v, str):
            errors.add(f"{path}.matchLabels.{k}", "value must be a string")
            continue
        check_label_value(v, errors, f"{path}.matchLabels.{k}")
        reqs.append(Requirement(k, "In", (v,)))
    exprs = obj.get("matchExpressions") or []
    if not isinstance(exprs, list):
        errors.add(f"{path}.matchExpressions", "must be a list")
        exprs = []
    for i, e in enumerate(exprs):
        p = f"{path}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            errors.add(p, "must be an object")
            continue
        key, op, values = e.get("key"), e.get("operator"), e.get("values")
        if not isinstance(key, str) or not key:
            errors.add(f"{p}.key", "Required value")
            continue
        check_label_key(key, errors, f"{p}.key")
        if op not in OPERATORS:
            errors.add(f"{p}.operator", f"Unsupported value: {op!r}: supported values: "
                       + ", ".join(f'"{o}"' for o in OPERATORS))
            continue
        if values is not None and not isinstance(values, list):
            errors.add(f"{p}.values", "must be a list of strings")
            continue
        values = values or []
        if op in ("In", "NotIn") and not values:
            errors.add(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
            continue
        if op in ("Exists", "DoesNotExist") and values:
            errors.add(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
            continue
        for j, v in enumerate(values):
            if not isinstance(v, str):
                errors.add(f"{p}.values[{j}]", "must be a string")
            else:
                check_label_value(v, errors, f"{p}.values[{j}]")
        reqs.append(Requirement(key, op, tuple(sorted(str(v) for v in values))))
    return LabelSelector(tuple(sorted(set(reqs), key=lambda r: (r.key, r.operator, r.values))))
