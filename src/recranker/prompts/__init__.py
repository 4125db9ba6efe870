"""RecRanker prompts: the instructions the LLM is tuned on and ranks with.

Submodules are imported explicitly (numpy/pandas only; the LLM code imports :mod:`.text`):
``config`` (the ``instruct.*`` hyper-parameters; light, the params schema imports it),
``corpus`` (a dataset's interactions per user, titles, :class:`~.corpus.DatasetContext`),
``training`` (training instructions: negatives, answers, hints), ``ranking_rows`` (test/valid
ranking instructions), ``layout`` (what both share), ``templates`` and ``text`` (wording, rating
scale), ``shifting`` (seeded position shifting), ``enhance`` (leak-free hints).
"""
