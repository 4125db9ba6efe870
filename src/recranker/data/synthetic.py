"""A seeded synthetic dataset written in the MovieLens-100K file format (``u.data`` + ``u.item``),
as RecBole atomic files (:func:`write_recbole_atomic`), or as LLaMA-Factory preference files in the
DMPO authors' layout (:func:`write_llama_factory`).

Used by tests and tiny end-to-end runs when the real data is absent. It is built so that a
recommender has something to learn: users and items get latent factors, and both *which* items a
user rates and *how* she rates them depend on the user-item affinity. Item popularity is
long-tailed (Zipf-like), item genres are a function of the item factors (so content carries
signal too), and each user's timestamps increase along her sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError
from recranker.io import atomic_path

from .movielens import ML100K_GENRES

_ADJ = (
    "Silent Crimson Last Hidden Broken Golden Lonely Wild Dark Electric Frozen Midnight Secret "
    "Burning Lost Little Iron Velvet Distant Savage Gentle Strange Bitter Hollow Rising"
).split()
_NOUN = (  # a few Latin-1 words, so the u.item file exercises the reader's decoding
    "Harbor Garden River Kingdom Stranger Summer Machine Promise Frontier Mirror Voyage Letter "
    "Detective Orchard Empire Café Señor Noël Station Island Witness Season Signal Canyon Château"
).split()
_SEQUEL = ["", " II", " III", " IV", " V", " VI", " VII", " VIII", " IX", " X"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _counts(
    rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int, min_per_user: int
) -> np.ndarray:
    """Ratings per user: a floor plus a log-normal activity share, capped at n_items, summing
    exactly to n_ratings."""
    weights = rng.lognormal(0.0, 1.0, n_users)
    counts = min_per_user + rng.multinomial(
        n_ratings - min_per_user * n_users, weights / weights.sum()
    )
    while (over := counts - n_items).max() > 0:  # give the excess to users with room left
        excess = int(over.clip(min=0).sum())
        counts = np.minimum(counts, n_items)
        room = (n_items - counts) * weights
        counts += rng.multinomial(excess, room / room.sum())
    return counts


def synthesize(
    n_users: int = 100,
    n_items: int = 200,
    n_ratings: int = 3000,
    *,
    seed: int = 0,
    dim: int = 8,
    zipf: float = 1.2,
    affinity: float = 2.0,
    min_per_user: int = 5,
    start: int = 874_724_710,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate (ratings, items) frames in ML-100K column order.

    ratings: ``user, item, rating, timestamp`` (1-based ids, ratings 1..5, rows in time order).
    items: ``item, title, release, genre flags...``. ``zipf`` is the popularity exponent,
    ``affinity`` how strongly the latent match drives which items a user picks.
    """
    for key, value, low in (
        ("n_users", n_users, 1),
        ("n_items", n_items, min_per_user),
        ("dim", dim, 1),
    ):
        if value < low:
            raise RecrankerError(f"synthesize: {key} must be ≥ {low}, got {value}")
    if not min_per_user * n_users <= n_ratings <= n_users * n_items:
        raise RecrankerError(
            f"synthesize: n_ratings must be in [{min_per_user * n_users}, {n_users * n_items}] "
            f"for {n_users} users and {n_items} items, got {n_ratings}"
        )
    rng = np.random.default_rng(seed)
    user_f = rng.normal(size=(n_users, dim)) / np.sqrt(dim)
    item_f = rng.normal(size=(n_items, dim))
    pop_rank = rng.permutation(n_items)  # item ids do not encode popularity
    log_pop = -zipf * np.log1p(pop_rank)
    match = user_f @ item_f.T  # [users, items], ~N(0, 1)
    # Choose each user's items without replacement ∝ popularity × exp(affinity · match)
    # (Gumbel top-k: the first c keys of a Gumbel-perturbed logit row).
    keys = log_pop[None, :] + affinity * match + rng.gumbel(size=match.shape)
    ranked = np.argsort(-keys, axis=1, kind="stable")
    counts = _counts(rng, n_users, n_items, n_ratings, min_per_user)
    users = np.repeat(np.arange(n_users), counts)
    within = np.arange(n_ratings) - np.repeat(np.cumsum(counts) - counts, counts)
    items = ranked[users, within]
    bias = rng.normal(0.0, 0.4, n_items)
    chosen = match[users, items]  # standardised among chosen items: choice already favours
    chosen = (chosen - chosen.mean()) / (chosen.std() + 1e-12)  # good matches (selection bias)
    score = 3.5 + 0.9 * chosen + bias[items] + rng.normal(0.0, 0.6, n_ratings)
    rating = np.clip(np.rint(score), 1, 5).astype(np.int64)
    # A random position of each choice in the user's sequence (choosing in Gumbel order would
    # put the best matches first and leave the weakest as the held-out test items).
    shuffle = np.lexsort((rng.random(n_ratings), users))
    items, rating = items[shuffle], rating[shuffle]
    # Timestamps: each user starts somewhere in a ~5-month window and rates at random gaps.
    first = rng.integers(0, 150 * 86400, n_users)
    gaps = 1 + rng.exponential(2 * 86400, n_ratings).astype(np.int64)
    starts = np.cumsum(counts) - counts
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts] - gaps[starts], counts)
    ts = start + first[users] + elapsed
    ratings = pd.DataFrame(
        {"user": users + 1, "item": items + 1, "rating": rating, "timestamp": ts}
    )
    ratings = ratings.iloc[np.lexsort((ratings["user"], ratings["timestamp"]))]
    return ratings.reset_index(drop=True), _items(rng, item_f)


def _items(rng: np.random.Generator, item_f: np.ndarray) -> pd.DataFrame:
    n_items, dim = item_f.shape
    genre_proj = rng.normal(size=(dim, len(ML100K_GENRES) - 1))
    affinity = item_f @ genre_proj
    top = np.argsort(-affinity, axis=1)[:, :3]
    flags = np.zeros((n_items, len(ML100K_GENRES)), dtype=np.int64)
    n_genres = rng.integers(1, 4, n_items)
    for k in range(3):
        pick = n_genres > k
        flags[np.flatnonzero(pick), 1 + top[pick, k]] = 1
    years = rng.integers(1930, 1999, n_items)
    months = rng.integers(0, 12, n_items)
    days = rng.integers(1, 29, n_items)
    seen: dict[str, int] = {}
    titles = []
    for i in range(n_items):
        base = f"The {_ADJ[rng.integers(len(_ADJ))]} {_NOUN[rng.integers(len(_NOUN))]}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        suffix = _SEQUEL[k] if k < len(_SEQUEL) else f" {k + 1}"
        titles.append(f"{base}{suffix} ({years[i]})")
    release = [f"{d:02d}-{_MONTHS[m]}-{y}" for d, m, y in zip(days, months, years)]
    df = pd.DataFrame({"item": np.arange(1, n_items + 1), "title": titles, "release": release})
    return pd.concat(
        [df, pd.DataFrame(flags, columns=[f"g{i}" for i in range(flags.shape[1])])], axis=1
    )


def write_synthetic(
    out_dir: str | Path,
    n_users: int = 100,
    n_items: int = 200,
    n_ratings: int = 3000,
    *,
    seed: int = 0,
    **kwargs,
) -> list[Path]:
    """Write ``u.data`` (ASCII) and ``u.item`` (Latin-1) into ``out_dir``; same seed → same bytes."""
    ratings, items = synthesize(n_users, n_items, n_ratings, seed=seed, **kwargs)
    out_dir = Path(out_dir)
    data = ratings.astype(str).agg("\t".join, axis=1)
    flag_cols = [f"g{i}" for i in range(len(ML100K_GENRES))]
    flags = items[flag_cols].astype(str).agg("|".join, axis=1)
    # id|title|release date|video release date|IMDb URL|19 flags (no URLs: nothing to link to)
    item_lines = (
        items["item"].astype(str) + "|" + items["title"] + "|" + items["release"] + "|||" + flags
    )
    written = []
    for name, lines, codec in (("u.data", data, "ascii"), ("u.item", item_lines, "latin-1")):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(("\n".join(lines) + "\n").encode(codec))
        written.append(out_dir / name)
    return written


# Titles the LLaMA-Factory generator puts among the negatives, one per history in turn: non-ASCII
# (JSON files keep them as UTF-8, unescaped), and punctuation that a title-splitting or
# text-editing importer stumbles on (", " inside titles, quotes, colons, brackets).
HARD_TITLES = (
    "Amélie (2001)", "Léon: The Professional (1994)", "8½ (1963)", "Nausicaä of the Valley of the Wind (1984)",
    "Ça, c'est la vie! (1999)", "Crouching Tiger, Hidden Dragon (2000)", "Godfather, The (1972)",
    "Sex, Lies, and Videotape (1989)", "Star Wars: Episode IV - A New Hope [Remastered] (1977)",
    '"Weird Al" Yankovic: Live! (1999)', "Das Boot (1981) , Director's Cut", "千と千尋の神隠し (2001)",
    "Ôtez-moi d'un doute, s'il vous plaît (2017)", "Who's Afraid of Virginia Woolf? (1966)",
)
LF_INSTRUCTION = ("Given the movies a user watched, rank the two candidate movies by how much the user would "
                  "like them. Answer with both titles, the preferred one first, separated by a comma.")


def _lf_input(history: list[str], first: str, second: str) -> str:
    """A layout unlike the project's own prompts: quoted titles, the candidates after the history."""
    watched = ", ".join(f'"{t}"' for t in history)
    return f"Watched: {watched}.\nCandidate 1: {first}\nCandidate 2: {second}"


def llama_factory_records(
    n_histories: int = 100, k: int = 3, *, n_eval: int = 100, seed: int = 0, history_len: int = 6,
    shared_eval: int = 0, negative_in_history_every: int = 4,
) -> dict[str, list[dict]]:
    """Seeded LLaMA-Factory records in the DMPO authors' layout: ``dpo_ranking`` (n_histories × k
    records, a sample's k records in a row, ``"output": [chosen, rejected]``), ``sft`` (the chosen
    order of every training pair as the answer string), ``valid`` (``eval`` with [chosen, rejected])
    and ``test`` (``eval``, the preferred order string). History h's first negative is
    ``HARD_TITLES[h % len]``; every ``negative_in_history_every``-th history also holds that
    negative in its history (so the title is mentioned twice). ``shared_eval`` eval pairs reuse a
    training history (the import's metrics report such overlap)."""
    if n_histories < 1 or k < 1 or n_eval < 1 or not 0 <= shared_eval <= min(n_eval, n_histories):
        raise RecrankerError(f"llama_factory_records: need n_histories, k, n_eval ≥ 1 and 0 ≤ shared_eval ≤ "
                             f"both, got {n_histories}, {k}, {n_eval}, {shared_eval}")  # fmt: skip
    rng = np.random.default_rng(seed)
    n_titles = max(200, history_len + k + len(HARD_TITLES) + 1)
    plain = [t for t in _items(rng, rng.normal(size=(n_titles, 8)))["title"] if t not in HARD_TITLES]

    def user(h: int, n_neg: int) -> tuple[list[str], str, list[str]]:
        hard = HARD_TITLES[h % len(HARD_TITLES)]
        picks = [plain[i] for i in rng.choice(len(plain), size=history_len + n_neg, replace=False)]
        history, positive, negatives = picks[: history_len - 1], picks[history_len - 1], [hard, *picks[history_len:]]
        if negative_in_history_every and h % negative_in_history_every == 0:
            history.insert(int(rng.integers(len(history) + 1)), hard)
        else:
            history.append(picks[-1])
        return history, positive, negatives[:n_neg]

    def record(history: list[str], pos: str, neg: str, output) -> dict:
        shown = (pos, neg) if rng.random() < 0.5 else (neg, pos)
        return {"instruction": LF_INSTRUCTION, "input": _lf_input(history, *shown), "output": output}

    train, sft, users = [], [], []
    for h in range(n_histories):
        history, pos, negs = user(h, k)
        users.append((history, pos))
        for neg in negs:
            train.append(record(history, pos, neg, [f"{pos}, {neg}", f"{neg}, {pos}"]))
            sft.append({**train[-1], "output": f"{pos}, {neg}"})
    valid, test = [], []
    for split, out in (("valid", valid), ("test", test)):
        for j in range(n_eval):
            history, pos, (neg,) = user(n_histories + j, 1)
            if j < shared_eval:  # a training history and positive, another negative
                history, pos = users[j]
            out.append(record(history, pos, neg, [f"{pos}, {neg}", f"{neg}, {pos}"] if split == "valid"
                              else f"{pos}, {neg}"))  # fmt: skip
    return {"dpo_ranking": train, "sft": sft, "valid": valid, "test": test}


def write_llama_factory(out_dir: str | Path, n_histories: int = 100, ks: tuple[int, ...] = (3,), *,
                        seed: int = 0, **kwargs) -> list[Path]:
    """Write ``dpo_ranking_<k>.json`` for each k, ``sft.json`` (of the first k), ``valid.json`` and
    ``test.json`` (JSON lists, UTF-8 unescaped, as LLaMA-Factory reads them); same seed → same bytes."""
    out_dir = Path(out_dir)
    files: dict[str, list[dict]] = {}
    for i, k in enumerate(ks):
        recs = llama_factory_records(n_histories, k, seed=seed, **kwargs)
        files[f"dpo_ranking_{k}.json"] = recs["dpo_ranking"]
        if i == 0:
            files.update({"sft.json": recs["sft"], "valid.json": recs["valid"], "test.json": recs["test"]})
    written = []
    for name, recs in files.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(json.dumps(recs, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written.append(out_dir / name)
    return written


def write_recbole_atomic(
    out_dir: str | Path, name: str = "synthetic", n_users: int = 100, n_items: int = 200, n_ratings: int = 3000,
    *, seed: int = 0, **kwargs,
) -> list[Path]:
    """The synthetic ratings as RecBole atomic files ``<name>.inter`` (``user_id:token item_id:token
    rating:float timestamp:float``; string ids, timestamps with a fractional second) and
    ``<name>.item`` (``item_id:token movie_title:token_seq release_year:token class:token_seq``),
    UTF-8, tab-separated; same seed → same bytes."""
    ratings, items = synthesize(n_users, n_items, n_ratings, seed=seed, **kwargs)
    tenths = np.random.default_rng([seed, 1]).integers(0, 10, len(ratings))
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"u{u}\ti{i}\t{r}\t{t}.{f}" for u, i, r, t, f in zip(
        ratings["user"], ratings["item"], ratings["rating"], ratings["timestamp"], tenths)]  # fmt: skip
    flags = items[[f"g{i}" for i in range(len(ML100K_GENRES))]].to_numpy(bool)
    genres = [" ".join(g.replace(" ", "_") for g, on in zip(ML100K_GENRES, row) if on) for row in flags]
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    item_lines += [f"i{i}\t{t}\t{r[-4:]}\t{g}" for i, t, r, g in zip(items["item"], items["title"], items["release"], genres)]
    out_dir = Path(out_dir)
    written = []
    for path, lines in ((out_dir / f"{name}.inter", inter), (out_dir / f"{name}.item", item_lines)):
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written
