"""Probe suites: the JSONL format, declarative checks and answer matching (docs/suite-format.md)."""

from forgetless.suites.checks import CHECKS, Check, CheckBase, english_words_ratio
from forgetless.suites.loader import (
    Suite,
    list_bundled_suites,
    load_suite,
    read_suite,
    require_items,
    write_suite,
)
from forgetless.suites.matching import (
    MATCH_MODES,
    MatchMode,
    contains_answer,
    find_numbers,
    matches,
    matches_choice,
    normalize,
    parse_number,
)
from forgetless.suites.schema import (
    ITEM_TYPES,
    CheckItem,
    GenItem,
    Item,
    ItemType,
    McItem,
    TextItem,
    parse_item,
)

__all__ = [
    "CHECKS",
    "ITEM_TYPES",
    "MATCH_MODES",
    "Check",
    "CheckBase",
    "CheckItem",
    "GenItem",
    "Item",
    "ItemType",
    "MatchMode",
    "McItem",
    "Suite",
    "TextItem",
    "contains_answer",
    "english_words_ratio",
    "find_numbers",
    "list_bundled_suites",
    "load_suite",
    "matches",
    "matches_choice",
    "normalize",
    "parse_item",
    "parse_number",
    "read_suite",
    "require_items",
    "write_suite",
]
