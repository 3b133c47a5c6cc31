"""The LangSmith senders this receiver understands: one module per sender.

A sender module holds the pydantic models of the body it POSTs (unknown fields kept, since
LangSmith adds fields over time) and a cheaper envelope the edge checks before answering.
To add a sender, add a module here; ``docs/senders.md`` says how each is pointed here.
"""

from receiver.sources.rule import FeedbackStat, RuleEnvelope, RulePayload, Run

__all__ = ["FeedbackStat", "RuleEnvelope", "RulePayload", "Run"]
