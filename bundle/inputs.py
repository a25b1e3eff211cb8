"""Module inputs, defined once.

Each module lists its inputs as :class:`Input` objects. From that one list we generate
the Terraform ``variable`` blocks (type, description, default, ``validation``), the
README inputs table, and the pydantic model that validates an environment file. A
:class:`Rule` carries the same constraint in both languages, so a value the
environment file accepts is a value Terraform accepts.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

VALUE = "{v}"  # where a rule's Terraform condition puts the value expression


def hcl_string(text: str) -> str:
    """A Terraform string literal for ``text`` (inside a ``${...}`` expression)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if "${" in escaped or "%{" in escaped:
        raise ValueError(f"template sequences are not allowed in literals: {text!r}")
    return f'"{escaped}"'


@dataclass(frozen=True)
class Rule:
    """One constraint, as a Terraform condition template and a Python predicate."""

    condition: str  # uses {v} for the value expression
    message: str  # ends with a full stop (Terraform requires a sentence)
    check: Callable[[Any], bool]

    def terraform(self, value_expression: str) -> str:
        return self.condition.replace(VALUE, value_expression)


def regex(pattern: str, message: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(
        condition=f"can(regex({hcl_string(pattern)}, {VALUE}))",
        message=message,
        check=lambda value: isinstance(value, str) and compiled.search(value) is not None,
    )


def one_of(values: Sequence[str]) -> Rule:
    listed = ", ".join(hcl_string(v) for v in values)
    return Rule(
        condition=f"contains([{listed}], {VALUE})",
        message=f"Must be one of: {', '.join(values)}.",
        check=lambda value: value in values,
    )


def integer_between(low: int, high: int) -> Rule:
    return Rule(
        condition=f"{VALUE} >= {low} && {VALUE} <= {high} && floor({VALUE}) == {VALUE}",
        message=f"Must be a whole number from {low} to {high}.",
        check=lambda value: (
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        ),
    )


def sentinel_or_integer_between(sentinel: int, low: int, high: int, meaning: str) -> Rule:
    """A whole number from ``low`` to ``high``, or ``sentinel`` for ``meaning``. (A JSON
    Terraform module cannot default a variable to null: ``"default": null`` makes it
    required, so "not set" needs a value of its own.)"""
    return Rule(
        condition=f"{VALUE} == {sentinel} || ({VALUE} >= {low} && {VALUE} <= {high} "
        f"&& floor({VALUE}) == {VALUE})",
        message=f"Must be {sentinel} ({meaning}) or a whole number from {low} to {high}.",
        check=lambda value: (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (value == sentinel or low <= value <= high)
        ),
    )


def number_between(low: float, high: float) -> Rule:
    return Rule(
        condition=f"{VALUE} >= {low} && {VALUE} <= {high}",
        message=f"Must be a number from {low} to {high}.",
        check=lambda value: (
            isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        ),
    )


def integer_in(values: Sequence[int], what: str) -> Rule:
    return Rule(
        condition=f"contains([{', '.join(str(v) for v in values)}], {VALUE})",
        message=f"Must be {what}: {', '.join(str(v) for v in values)}.",
        check=lambda value: value in values and not isinstance(value, bool),
    )


def _is_cidr(value: Any) -> bool:
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


CIDR = Rule(
    condition=f"can(cidrhost({VALUE}, 0))",
    message="Must be an IPv4 or IPv6 CIDR block, such as 203.0.113.0/24 or 2001:db8::/32.",
    check=_is_cidr,
)
ARN = regex(
    r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:([0-9]{12})?:.+$",
    "Must be an ARN, such as arn:aws:sns:us-east-1:111122223333:alerts.",
)
EMAIL = regex(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "Must be an e-mail address.")
HTTPS_URL = regex(r"^https://[^\s]+$", "Must be an https:// URL.")
NAME_PREFIX = regex(
    r"^[a-z][a-z0-9-]{1,23}$",
    "Must be 2-24 characters: lowercase letters, digits and hyphens, starting with a letter.",
)
SECRET_NAME = regex(
    r"^$|^[A-Za-z0-9/_+=.@-]{1,512}$",
    "Must be empty or a Secrets Manager secret name (letters, digits and /_+=.@-).",
)
TAG_MAP = Rule(
    condition=f"alltrue([for k, v in {VALUE} : length(k) <= 128 && length(v) <= 256])",
    message="Tag keys must be at most 128 characters and values at most 256.",
    check=lambda value: all(len(k) <= 128 and len(v) <= 256 for k, v in value.items()),
)

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

_PYTHON_TYPES: dict[str, Any] = {
    "string": StrictStr,
    "bool": StrictBool,
    "number": StrictInt | StrictFloat,
    "list(string)": list[StrictStr],
    "set(string)": list[StrictStr],
    "map(string)": dict[StrictStr, StrictStr],
}


REQUIRED = object()  # marks an object attribute without a default


@dataclass(frozen=True)
class Attribute:
    """One attribute of an object-typed input; ``default`` makes it Terraform-optional."""

    name: str
    type: str
    default: Any = REQUIRED

    def terraform(self) -> str:
        if self.default is REQUIRED:
            return f"{self.name} = {self.type}"
        return f"{self.name} = optional({self.type}, {json.dumps(self.default)})"


@dataclass(frozen=True)
class Shape:
    """An object type: ``object({...})`` in Terraform, a strict pydantic model in Python."""

    name: str
    attributes: tuple[Attribute, ...]

    def terraform(self) -> str:
        return "object({" + ", ".join(a.terraform() for a in self.attributes) + "})"

    def model(self) -> type[BaseModel]:
        fields: dict[str, Any] = {
            a.name: (_PYTHON_TYPES[a.type], ... if a.default is REQUIRED else a.default)
            for a in self.attributes
        }
        model: type[BaseModel] = create_model(
            self.name, __config__=ConfigDict(extra="forbid", frozen=True), **fields
        )
        return model


@dataclass(frozen=True)
class Input:
    """One module input: a Terraform variable and a field of the environment schema."""

    name: str
    type: str
    description: str
    default: Any = None
    required: bool = False
    rules: tuple[Rule, ...] = ()
    each: tuple[Rule, ...] = field(default=())  # rules for every element (map: every value)
    element: Shape | None = None  # for list(object(...)) inputs; ``type`` is then derived
    value: Shape | None = None  # for map(object(...)) inputs; ``type`` is then derived
    # Values that exist in one region only: "ids" (an id does not say which region, so an
    # environment may give it to one region of an account only) or "arns" (every ARN's
    # region must be the stack's). See bundle/environments.py.
    region_bound: str = ""

    def __post_init__(self) -> None:
        if self.element is not None:
            object.__setattr__(self, "type", f"list({self.element.terraform()})")
        elif self.value is not None:
            object.__setattr__(self, "type", f"map({self.value.terraform()})")
        elif self.type not in _PYTHON_TYPES:
            raise ValueError(f"input {self.name}: unsupported type {self.type}")
        if self.each and not self.type.startswith(("list", "set", "map")):
            raise ValueError(f"input {self.name}: element rules need a list, set or map type")
        if self.region_bound not in ("", "ids", "arns"):
            raise ValueError(f"input {self.name}: region_bound is '', 'ids' or 'arns'")

    def variable(self) -> dict[str, Any]:
        """The Terraform ``variable`` block."""
        block: dict[str, Any] = {"type": self.type, "description": self.description}
        if not self.required:
            block["default"] = self.default
            block["nullable"] = False
        validations = [
            {
                "condition": f"${{{rule.terraform(f'var.{self.name}')}}}",
                "error_message": rule.message,
            }
            for rule in self.rules
        ]
        validations += [
            {
                "condition": f"${{alltrue([for item in var.{self.name} : "
                f"{rule.terraform('item')}])}}",
                "error_message": rule.message,
            }
            for rule in self.each
        ]
        if validations:
            block["validation"] = validations
        return block

    def python_type(self) -> Any:
        base: Any
        if self.element is not None:
            model = self.element.model()
            checks = [AfterValidator(_object_checker(r)) for r in self.each]
            base = list[Annotated[model, *checks]] if checks else list[model]  # type: ignore[valid-type]
        elif self.value is not None:
            base = dict[StrictStr, self.value.model()]  # type: ignore[misc]
        elif self.each:
            element = Annotated[StrictStr, *(AfterValidator(_checker(r)) for r in self.each)]
            base = dict[StrictStr, element] if self.type.startswith("map") else list[element]
        else:
            base = _PYTHON_TYPES[self.type]
        if self.rules:
            return Annotated[base, *(AfterValidator(_checker(r)) for r in self.rules)]
        return base


def _checker(rule: Rule) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not rule.check(value):
            raise ValueError(rule.message.rstrip("."))
        return value

    return check


def _object_checker(rule: Rule) -> Callable[[BaseModel], BaseModel]:
    def check(value: BaseModel) -> BaseModel:
        if not rule.check(value.model_dump()):
            raise ValueError(rule.message.rstrip("."))
        return value

    return check


def parameters_model(module: str, inputs: Sequence[Input]) -> type[BaseModel]:
    """The pydantic model of a module's parameters in an environment file."""
    fields: dict[str, Any] = {}
    for item in inputs:
        fields[item.name] = (item.python_type(), ... if item.required else item.default)
    model: type[BaseModel] = create_model(
        f"{module}_parameters",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **fields,
    )
    return model


# Inputs every module has, so the same names mean the same thing everywhere.
CREATE = Input(
    "create",
    "bool",
    "Whether to create anything at all. Set to false to keep the module call in place "
    "while removing every resource it manages.",
    default=True,
)
NAME = Input(
    "name_prefix",
    "string",
    "Prefix for the names of every resource the module creates (topics, functions, "
    "tables, log groups). Use one prefix per deployment of the module in an account.",
    default="playbook",
    rules=(NAME_PREFIX,),
)
TAGS = Input(
    "tags",
    "map(string)",
    "Tags added to every taggable resource, merged with the fixed ManagedBy and Module tags.",
    default={},
    rules=(TAG_MAP,),
)
COMMON_INPUTS = (CREATE, NAME, TAGS)
