"""DMPO (Bai et al., 2024): few-shot preference samples, the authors' data importer, DMPO training
and preference evaluation — the DMPO branch of the pipeline, apart from RecRanker's.

Submodules are imported explicitly (heavy libraries load inside functions):
``samples`` (samples from ratings, leakage check), ``importer`` (LLaMA-Factory files),
``train`` (loss, trainer), ``evaluate`` (AUC variants, bootstrap), ``backbones`` (DMPO Table 2).
"""
