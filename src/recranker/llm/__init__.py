"""The LLM side: model loading (offline default), SFT, DMPO, preference evaluation.

Heavy libraries (torch, transformers, trl, peft) are imported inside functions, so importing
this package stays cheap; submodules are imported explicitly (``from recranker.llm.sft import ...``).
"""
