"""A leaderboard of models from blind pairwise votes (as in Chatbot Arena), without a database.

    from chat_core.data.leaderboard import Battle, leaderboard, win_rate_figure
    board = leaderboard([Battle("llama", "qwen", "a"), Battle("qwen", "llama", "tie")])
    board["contenders"][0]["name"], board["contenders"][0]["rating"]
    win_rate_figure(board)          # a matplotlib Figure: gr.Plot(value=...) or .savefig("x.png")

The method, so the numbers can be explained to whoever reads them:

- Ratings are a Bradley-Terry model fitted by maximum likelihood: P(i beats j) =
  s_i / (s_i + s_j). A "tie" and a "both_bad" vote count as half a win for each side, as
  FastChat's arena does (both mean neither answer was preferred).
- Scale: rating = 1000 + 400 * log10(s_i), shifted so that the mean rating of the contenders
  on the board is 1000. A 400-point gap means the higher one is expected to win 10 of 11 votes.
- Prior: every contender also gets one virtual tie against a fixed reference of strength 1.
  Without it a contender who won every vote would have an infinite rating (the likelihood keeps
  growing); with it ratings stay finite and contenders with few votes stay near the middle.
  The prior weighs one vote, so with real numbers of votes it hardly moves anything.
- The fit is Newton's method on the log-strengths (the log-likelihood is strictly concave with
  the prior), every bootstrap round at once as one batch of small linear systems.
- 95% interval: percentile bootstrap over votes: the votes are resampled with replacement
  `bootstrap_rounds` times (a multinomial draw over the pair-outcome counts, which is the same
  thing and much cheaper), each sample refitted, and the 2.5th and 97.5th percentiles of each
  contender's rating kept. Deterministic for a given `seed` and set of votes (the order of the
  votes does not matter). A percentile interval usually, not always, contains the rating.
- A vote between a contender and itself (a == b) says nothing about either and is ignored.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from chat_core.states import BOTH_BAD, TIE, WINNER_A, WINNERS

if TYPE_CHECKING:
    # The figures import matplotlib themselves: it costs most of a second of every app
    # start, for a tab one may never open.
    from matplotlib.figure import Figure

METHOD = "bradley-terry"
BASE_RATING = 1000.0
SCALE = 400.0 / math.log(10)        # natural log-strength -> Elo points
PRIOR_TIES = 1.0                    # virtual ties of each contender against the reference
_MAX_STEP = 1.0                     # the longest Newton step, in log-strength, per iteration
_MAX_ITERATIONS = 200
_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Battle:
    """One vote: contender `a` against contender `b`, and which side the voter preferred."""

    a: str
    b: str
    winner: str

    def __post_init__(self) -> None:
        if self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS}, not {self.winner!r}")
        if not isinstance(self.a, str) or not isinstance(self.b, str) or not self.a or not self.b:
            raise ValueError(f"a battle needs two contender names, got {self.a!r} and {self.b!r}")


@dataclass(frozen=True)
class _Counts:
    """The votes folded into pairs: for pair k, names[i[k]] vs names[j[k]] (i < j) and its
    outcome counts [i won, j won, drawn]. Everything else is computed from this."""

    names: list[str]
    i: np.ndarray
    j: np.ndarray
    outcomes: np.ndarray            # shape (pairs, 3), integers


def _tally(battles: Iterable[Battle]) -> Counter[tuple[str, str, int]]:
    """(first name, second name, outcome) -> votes, names in sorted order so that which side
    a model was shown on does not matter; outcome 0: first won, 1: second won, 2: drawn."""
    tally: Counter[tuple[str, str, int]] = Counter()
    for battle in battles:
        if not isinstance(battle, Battle):
            raise ValueError(f"expected Battle(a, b, winner), got {battle!r}")
        if battle.a == battle.b:
            continue
        first, second = sorted((battle.a, battle.b))
        if battle.winner in (TIE, BOTH_BAD):
            outcome = 2
        else:
            winner_name = battle.a if battle.winner == WINNER_A else battle.b
            outcome = 0 if winner_name == first else 1
        tally[(first, second, outcome)] += 1
    return tally


def _count(battles: Iterable[Battle]) -> _Counts:
    tally = _tally(battles)
    names = sorted({name for first, second, _ in tally for name in (first, second)})
    index = {name: k for k, name in enumerate(names)}
    pairs = sorted({(index[first], index[second]) for first, second, _ in tally})
    row_of = {pair: row for row, pair in enumerate(pairs)}
    outcomes = np.zeros((len(pairs), 3), dtype=np.int64)
    for (first, second, outcome), votes in tally.items():
        outcomes[row_of[(index[first], index[second])], outcome] = votes
    i = np.array([p[0] for p in pairs], dtype=np.int64)
    j = np.array([p[1] for p in pairs], dtype=np.int64)
    return _Counts(names, i, j, outcomes)


def _score_matrices(counts: _Counts, outcomes: np.ndarray) -> np.ndarray:
    """Scores W[r, i, j]: what i scored against j in sample r (a win 1, a draw 1/2).
    `outcomes` has shape (samples, pairs, 3)."""
    n = len(counts.names)
    scores = np.zeros((outcomes.shape[0], n, n))
    half_draws = 0.5 * outcomes[:, :, 2]
    scores[:, counts.i, counts.j] = outcomes[:, :, 0] + half_draws
    scores[:, counts.j, counts.i] = outcomes[:, :, 1] + half_draws
    return scores


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _fit(scores: np.ndarray) -> np.ndarray:
    """Bradley-Terry log-strengths, shape (samples, contenders), maximising for each sample
    sum_ij W_ij log sigma(t_i - t_j) + PRIOR_TIES * sum_i [log sigma(t_i) + log sigma(-t_i)] / 2
    (the second sum: the virtual ties against the reference at 0). Newton steps, each capped at
    _MAX_STEP so that a lopsided sample cannot overshoot."""
    games = scores + np.swapaxes(scores, 1, 2)
    own_score = scores.sum(axis=2) + 0.5 * PRIOR_TIES
    theta = np.zeros(scores.shape[:2])
    eye = np.eye(scores.shape[1])
    for _ in range(_MAX_ITERATIONS):
        p = _sigmoid(theta[:, :, None] - theta[:, None, :])
        p_ref = _sigmoid(theta)
        gradient = own_score - (games * p).sum(axis=2) - PRIOR_TIES * p_ref
        weights = games * p * (1.0 - p)
        curvature = weights.sum(axis=2) + PRIOR_TIES * p_ref * (1.0 - p_ref)
        hessian = curvature[:, :, None] * eye - weights      # minus the Hessian: positive definite
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        longest = np.abs(step).max(axis=1, keepdims=True)
        theta += step * np.minimum(1.0, _MAX_STEP / np.maximum(longest, 1e-300))
        if longest.max() < _TOLERANCE:
            break
    return theta


def _ratings(theta: np.ndarray) -> np.ndarray:
    """Elo-scale ratings whose mean over the contenders is BASE_RATING."""
    return BASE_RATING + SCALE * (theta - theta.mean(axis=-1, keepdims=True))


def _bootstrap(counts: _Counts, rounds: int, seed: int) -> np.ndarray:
    """Ratings of `rounds` resamples of the votes, shape (rounds, contenders)."""
    flat = counts.outcomes.reshape(-1)
    total = int(flat.sum())
    draws = np.random.default_rng(seed).multinomial(total, flat / total, size=rounds)
    outcomes = draws.reshape(rounds, *counts.outcomes.shape)
    return _ratings(_fit(_score_matrices(counts, outcomes)))


def _tallies(counts: _Counts) -> dict[str, np.ndarray]:
    """Per contender: votes, wins, losses and draws (tie and both_bad)."""
    n = len(counts.names)
    wins, losses, draws = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    first_won, second_won, drawn = counts.outcomes.T
    np.add.at(wins, counts.i, first_won)
    np.add.at(wins, counts.j, second_won)
    np.add.at(losses, counts.i, second_won)
    np.add.at(losses, counts.j, first_won)
    np.add.at(draws, counts.i, drawn)
    np.add.at(draws, counts.j, drawn)
    return {"wins": wins, "losses": losses, "ties": draws, "battles": wins + losses + draws}


def _matrix(scores: np.ndarray, order: list[int], names: list[str]) -> dict[str, Any]:
    """win_rate[r][c]: the share of the votes between row r and column c that r won (a draw
    counts half), None when they never met; battles[r][c]: how many votes they had."""
    scores = scores[np.ix_(order, order)]
    games = scores + scores.T
    rates = [[round(float(scores[r, c] / games[r, c]), 4) if games[r, c] else None
              for c in range(len(order))] for r in range(len(order))]
    return {"names": [names[k] for k in order], "win_rate": rates,
            "battles": [[int(round(g)) for g in row] for row in games]}


def _interval(samples: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    if samples is None:
        return None, None
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return low, high


def leaderboard(battles: Iterable[Battle], bootstrap_rounds: int = 200,
                seed: int = 0) -> dict[str, Any]:
    """The board, JSON-ready: contenders by rating (highest first) with their 95% interval and
    vote counts, the number of votes counted, and the head-to-head win-rate matrix in the same
    order. The method is in this module's docstring. With `bootstrap_rounds=0` there is no
    interval (ci_low and ci_high are None)."""
    if bootstrap_rounds < 0:
        raise ValueError(f"bootstrap_rounds must be 0 or more, not {bootstrap_rounds}")
    counts = _count(battles)
    board: dict[str, Any] = {"contenders": [], "battles": int(counts.outcomes.sum()),
                             "method": METHOD, "bootstrap_rounds": bootstrap_rounds,
                             "matrix": {"names": [], "win_rate": [], "battles": []}}
    if not counts.names:
        return board
    scores = _score_matrices(counts, counts.outcomes[None])
    rating = _ratings(_fit(scores))[0]
    low, high = _interval(_bootstrap(counts, bootstrap_rounds, seed) if bootstrap_rounds else None)
    tallies = _tallies(counts)
    order = sorted(range(len(counts.names)), key=lambda k: (-round(rating[k], 6), counts.names[k]))
    for k in order:
        played = int(tallies["battles"][k])
        board["contenders"].append({
            "name": counts.names[k], "rating": round(float(rating[k]), 2),
            "ci_low": None if low is None else round(float(low[k]), 2),
            "ci_high": None if high is None else round(float(high[k]), 2),
            "battles": played, "wins": int(tallies["wins"][k]),
            "losses": int(tallies["losses"][k]), "ties": int(tallies["ties"][k]),
            "win_rate": round(float(tallies["wins"][k] + 0.5 * tallies["ties"][k]) / played, 4)})
    board["matrix"] = _matrix(scores[0], order, counts.names)
    return board


# -- pictures (matplotlib's object API, no pyplot: nothing global, safe in a server) -----------

WIN_RATE_TITLE = "Head-to-head win rate (row against column)"
RATINGS_TITLE = "Ratings with 95% intervals"
NO_VOTES = "no votes yet"
_NO_BATTLES_GREY = "#d9d9d9"


def _empty_figure(title: str) -> Figure:
    from matplotlib.figure import Figure
    figure = Figure(figsize=(6, 2.5), layout="constrained")
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, NO_VOTES, ha="center", va="center", fontsize=14, color="grey",
              transform=axes.transAxes)
    return figure


def _annotate_cells(axes: Any, rates: np.ndarray, games: list[list[int]]) -> None:
    """The share as a percentage and the number of votes in each cell that has votes; white
    text on the dark ends of the colour scale, black in the pale middle."""
    size = max(6.0, 11.0 - 0.4 * len(rates))
    for r, row in enumerate(rates):
        for c, rate in enumerate(row):
            if np.isnan(rate):
                continue
            colour = "white" if abs(rate - 0.5) > 0.3 else "black"
            axes.text(c, r, f"{rate:.0%}\n{games[r][c]} votes", ha="center", va="center",
                      fontsize=size, color=colour)


def win_rate_figure(board: dict[str, Any]) -> Figure:
    """The board's win-rate matrix as a heatmap: cell (row, column) is the share of their votes
    the row's contender won (ties half), with the vote count; grey where they never met. An
    empty board gives a figure that says so. Show with gr.Plot, or figure.savefig(path)."""
    matrix = board.get("matrix") or {}
    names = list(matrix.get("names") or [])
    if not names:
        return _empty_figure(WIN_RATE_TITLE)
    rates = np.array([[np.nan if v is None else v for v in row] for row in matrix["win_rate"]],
                     dtype=float)
    side = 2.5 + 0.8 * len(names)
    from matplotlib.figure import Figure
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(rates), cmap=_colour_map(), vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(names)), labels=names, rotation=40, ha="right",
                    rotation_mode="anchor")
    axes.set_yticks(range(len(names)), labels=names)
    axes.set_xlabel("opponent")
    axes.set_ylabel("contender")
    axes.set_title(WIN_RATE_TITLE)
    _annotate_cells(axes, rates, matrix["battles"])
    figure.colorbar(image, ax=axes, label="share of votes won (ties count half)")
    return figure


def _colour_map() -> Any:
    from matplotlib import colormaps
    return colormaps["RdBu"].with_extremes(bad=_NO_BATTLES_GREY)


def ratings_figure(board: dict[str, Any]) -> Figure:
    """The ratings as a forest plot: each contender's rating (a dot, highest at the top) and its
    95% interval (the bar); the dotted line is the mean rating, 1000."""
    contenders = board.get("contenders") or []
    if not contenders:
        return _empty_figure(RATINGS_TITLE)
    from matplotlib.figure import Figure
    figure = Figure(figsize=(7, 1.5 + 0.45 * len(contenders)), layout="constrained")
    axes = figure.add_subplot()
    y = np.arange(len(contenders))[::-1]
    ratings = np.array([c["rating"] for c in contenders], dtype=float)
    low = np.array([c["rating"] if c["ci_low"] is None else c["ci_low"] for c in contenders])
    high = np.array([c["rating"] if c["ci_high"] is None else c["ci_high"] for c in contenders])
    errors = np.vstack([np.maximum(ratings - low, 0.0), np.maximum(high - ratings, 0.0)])
    axes.errorbar(ratings, y, xerr=errors, fmt="o", capsize=4, color="#2b6cb0")
    for rating, row in zip(ratings, y):
        axes.annotate(f"{rating:.0f}", (rating, row), xytext=(0, 6), textcoords="offset points",
                      ha="center", fontsize=8)
    axes.axvline(BASE_RATING, color="grey", linestyle=":", linewidth=1)
    axes.set_yticks(y, labels=[c["name"] for c in contenders])
    axes.set_ylim(-0.7, len(contenders) - 0.3)
    axes.set_xlabel("rating (Elo scale, mean 1000)")
    axes.set_title(f"{RATINGS_TITLE} ({board.get('battles', 0)} votes)")
    axes.grid(axis="x", alpha=0.3)
    return figure
