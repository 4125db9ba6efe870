"""Ranking tasks over an LLM backend, and RecRanker's hybrid ranking.

Submodules are imported explicitly: ``instructions`` (parsing), ``tasks`` (scoring per task),
``listwise`` (the parser), ``hybrid`` (the formula and the evaluation), ``selection`` (the weights
chosen on the valid split), ``config`` (:class:`~.config.HybridWeights`; light, the params schema
imports it, so this package imports nothing eagerly).

Light module (no torch): the backend object does the model work. Three steps:

1. ``parse_instructions``: test instructions (docs/CONTRACTS.md) → :class:`Instruction`.
2. ``run_tasks`` (all tasks, one backend call) or ``run_pointwise`` / ``run_pairwise``: one
   prediction row per instruction (``id``, ``user_id``, ``candidates``, ``scores`` — higher =
   preferred — plus extras); listwise via its letter verbalizer or generation + parser.
3. ``utilities`` / ``rerank``: the paper's hybrid formula over a user's k' backbone candidates:
   U_point = s − m·C1 (s the LLM's expected rating, m the backbone rank 1..k'),
   U_pair = C2 for the preferred item of each compared pair,
   U_list = −m'·C3 (m' the LLM's 1-based listwise position),
   U = a1·U_point + a2·U_pair + a3·U_list; ties keep the backbone order.
"""
