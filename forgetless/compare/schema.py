"""The report `compare` returns: plain pydantic models, so JSON, Markdown and HTML read the same object.

Sign convention everywhere: `drop = before - after` in the metric's "higher is better" direction,
so a positive drop is forgetting. For text items the score is the negated per-token NLL, so the
drop is the increase in NLL (nats per token).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

REPORT_FORMAT_VERSION = 1

Verdict = Literal["forgetting", "no_forgetting", "inconclusive"]
MetricName = Literal["knowledge", "behaviour", "checklist", "text"]
DiagnosisKind = Literal["none", "knowledge_loss", "behavioural_drift", "knowledge_and_behaviour", "text_drift",
                        "inconclusive"]


class Comparison(BaseModel):
    """One metric on one slice of items (all items, one suite, or one category), paired per item."""

    metric: MetricName
    scope: Literal["overall", "suite", "category"]
    label: str
    n: int
    before: float  # accuracy before (text: mean NLL per token)
    after: float
    drop: float  # before - after; positive = worse
    ci_low: float  # interval for the drop at the report's confidence
    ci_high: float
    ci_method: Literal["bootstrap+newcombe", "bootstrap"]  # binary: union of both intervals
    p_value: float  # two-sided, unadjusted (McNemar exact / sign-flip)
    p_adjusted: float  # Holm-adjusted within its family (see docs/compare.md)
    lost: int  # items right before and wrong after (continuous: score went down)
    gained: int
    mde: float | None  # minimum detectable drop at alpha 0.05, power 0.8; None = none detectable
    verdict: Verdict
    reason: str  # one clause: why this verdict


class KLSummary(BaseModel):
    """Mean KL(reference || after) per token on text items, from the after-result alone."""

    n: int
    mean: float
    ci_low: float
    ci_high: float


class MetricReport(BaseModel):
    """A metric's headline comparison plus its breakdowns by suite and category."""

    metric: MetricName
    title: str
    unit: str
    overall: Comparison
    suites: list[Comparison] = Field(default_factory=list)
    categories: list[Comparison] = Field(default_factory=list)
    perplexity_before: float | None = None  # text only: exp(mean per-item NLL)
    perplexity_after: float | None = None
    kl: KLSummary | None = None  # text only, when the after-result carries KL

    @property
    def verdict(self) -> Verdict:
        return self.overall.verdict


class KnowsSays(BaseModel):
    """Multiple-choice items crossed by knowledge (log-likelihood right) and behaviour (open answer right)."""

    n: int
    before: dict[str, int]  # cell -> count; cells in KNOWS_SAYS_CELLS order
    after: dict[str, int]
    change: dict[str, int]  # after - before


class CollapseExample(BaseModel):
    key: str
    reply_before: str | None
    reply_after: str | None
    matched: str  # the copied phrase (normalized words)


class TemplateCollapse(BaseModel):
    """How many general replies copy the training responses' phrasing, before and after."""

    source: str  # the training JSONL read
    training_responses: int
    n: int  # general replies compared
    ngram: int  # shared word n-gram length that counts as copying
    openings: list[str]  # the training set's common 3-word openings that count
    share_before: float
    share_after: float
    ngram_share_before: float
    ngram_share_after: float
    opening_share_before: float
    opening_share_after: float
    p_value: float  # McNemar on the per-reply "copies" indicator
    collapsed: bool
    examples: list[CollapseExample] = Field(default_factory=list)


class OpeningConcentration(BaseModel):
    """Share of general replies that start with the most common 3-word opening (no training data needed)."""

    n: int
    opening: str  # the most common opening of the after replies
    share_before: float  # share of before replies with that same opening
    share_after: float


class Diagnosis(BaseModel):
    kind: DiagnosisKind
    label: str  # e.g. "behavioural drift with knowledge intact"
    details: list[str] = Field(default_factory=list)
    knows_says: KnowsSays | None = None
    template_collapse: TemplateCollapse | None = None
    opening_concentration: OpeningConcentration | None = None


class ChecklistFailure(BaseModel):
    key: str
    category: str
    severity: str
    status: Literal["broken", "still_failing"]  # broken = passed before, fails after
    failed_checks: list[str]
    prompt: str
    reply_before: str | None
    reply_after: str | None


class LostExample(BaseModel):
    """An item right before and wrong after, with both replies (for reports that show examples)."""

    key: str
    metric: MetricName
    category: str
    prompt: str
    expected: str | None
    answer_before: str | None  # mc: the chosen option; otherwise the reply
    answer_after: str | None


class Recommendation(BaseModel):
    action: str
    why: str
    change: str  # the config key, value or command to use, e.g. "replay.fraction: 0.25"


class ModelSide(BaseModel):
    model: dict[str, Any]
    training: dict[str, Any] | None = None


DOMAIN_HEADLINE = ("behaviour", "knowledge", "checklist")


class ForgettingReport(BaseModel):
    """Everything `forgetless compare` says about one before/after pair."""

    format_version: int = REPORT_FORMAT_VERSION
    before: ModelSide
    after: ModelSide
    threshold: float
    confidence: float
    alpha: float
    seed: int
    suites: list[str]
    domain_suites: list[str]  # scored as gains, not as forgetting
    verdict: Verdict
    headline: str
    # what was learned (domain gains with CIs and accuracies after), then what it cost: the report's first line
    tradeoff: str = ""
    triggered_by: list[str]  # "behaviour", "knowledge: arithmetic", ...
    metrics: list[MetricReport]
    domain: list[MetricReport] = Field(default_factory=list)
    diagnosis: Diagnosis
    checklist_failures: list[ChecklistFailure] = Field(default_factory=list)
    lost_examples: list[LostExample] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def forgetting(self) -> bool:
        return self.verdict == "forgetting"

    def metric(self, name: str) -> MetricReport | None:
        """The non-domain metric called `name`, or None if no item measured it."""
        return next((m for m in self.metrics if m.metric == name), None)

    def domain_metric(self) -> MetricReport | None:
        """The domain measure a gain is quoted on (`DOMAIN_HEADLINE` order): what the model says where it
        was asked openly, else multiple choice, else the checklist; None without a domain suite."""
        return next((m for name in DOMAIN_HEADLINE for m in self.domain if m.metric == name), None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"
