"""The LLM side of RecRanker: model loading (offline default), instruction tuning (``sft``, with
``training``: what it shares with DMPO's trainer in :mod:`recranker.dmpo`), scoring and ranking
backends, and the multi-process launch.

Heavy libraries (torch, transformers, trl, peft) are imported inside functions, so importing
this package stays cheap; submodules are imported explicitly (``from recranker.llm.sft import ...``).
"""
