"""recranker: instruction-tuned LLM re-ranking for conventional recommenders (RecRanker, DMPO)."""

__version__ = "0.1.0"
