"""Which suites a workflow scores, and deterministic subsets of them for quick runs."""

from __future__ import annotations

from forgetless.suites import Suite, load_suite

GENERAL = ("general", "checklist", "general-text")
BUNDLED_DATA = "builtin:domain/train.jsonl"
BUNDLED_DOMAIN_SUITE = "domain"


def subset(suite: Suite, per_type: int | None) -> Suite:
    """At most `per_type` items of each type, spread evenly over the file (so every category stays)."""
    if not per_type:
        return suite
    chosen = []
    for kind in ("mc", "gen", "check", "text"):
        items = suite.by_type(kind)
        step = max(1, len(items) // per_type)
        chosen += items[::step][:per_type]
    keep = {it.id for it in chosen}
    return Suite(name=suite.name, path=suite.path, items=[it for it in suite.items if it.id in keep])


def workflow_suites(domain_suite: str | None, per_type: int | None) -> list[Suite]:
    names = [*GENERAL, *([domain_suite] if domain_suite else [])]
    return [subset(load_suite(name), per_type) for name in names]


def sweep_suites(suites: list[Suite], domain: str | None) -> tuple[list[Suite], Suite | None]:
    """The suites a recovery sweep evaluates at each alpha: the general ones that hold items it judges
    (text-only drift suites give it nothing, so they are not evaluated again), and the domain suite."""
    general = [s for s in suites if s.name != domain and any(it.type != "text" for it in s)]
    return general, next((s for s in suites if s.name == domain), None)
