"""The leaderboard from blind pairwise votes: who ranks where, how sure the board is, the
head-to-head matrix, and its pictures. Pure computation: no database, no app. (Fast.)"""

from __future__ import annotations

import io
import itertools
import json
import math
import random

import numpy as np
import pytest
from matplotlib.figure import Figure

from chat_core.data.leaderboard import (NO_VOTES, Battle, leaderboard, ratings_figure,
                                        win_rate_figure)


def _votes(a: str, b: str, a_wins: int, b_wins: int, ties: int = 0, both_bad: int = 0,
           ) -> list[Battle]:
    """Votes between a and b, with each contender shown on either side in turn (a blind
    comparison shuffles the sides, and the side must not matter)."""
    votes = []
    for k in range(a_wins):
        votes.append(Battle(a, b, "a") if k % 2 else Battle(b, a, "b"))
    for k in range(b_wins):
        votes.append(Battle(a, b, "b") if k % 2 else Battle(b, a, "a"))
    votes += [Battle(a, b, "tie")] * ties + [Battle(b, a, "both_bad")] * both_bad
    return votes


def _by_name(board: dict) -> dict[str, dict]:
    return {c["name"]: c for c in board["contenders"]}


def _league() -> list[Battle]:
    """Four models of clearly different strength, 40 votes per pair."""
    return (_votes("large", "medium", 26, 10, 4) + _votes("large", "small", 32, 4, 2, 2)
            + _votes("large", "tiny", 36, 2, 2) + _votes("medium", "small", 24, 12, 4)
            + _votes("medium", "tiny", 30, 6, 4) + _votes("small", "tiny", 22, 14, 2, 2))


def test_the_model_that_wins_most_ranks_first_and_its_interval_clears_the_loser() -> None:
    board = leaderboard(_votes("strong", "weak", 210, 90))
    strong, weak = board["contenders"]
    assert (strong["name"], weak["name"]) == ("strong", "weak")
    assert strong["rating"] > weak["rating"]
    assert strong["ci_low"] > weak["ci_high"], board
    assert (strong["wins"], strong["losses"], strong["battles"]) == (210, 90, 300)
    assert strong["win_rate"] == 0.7 and weak["win_rate"] == 0.3
    assert board["battles"] == 300 and board["method"] == "bradley-terry"
    assert board["bootstrap_rounds"] == 200


def test_the_interval_is_as_wide_as_the_statistics_say() -> None:
    """300 votes won 70:30: the log-odds gap has a standard error of 1/sqrt(300*0.7*0.3), so
    each side's 95% interval (half the gap, on the Elo scale) is about +-21 points."""
    board = leaderboard(_votes("strong", "weak", 210, 90), bootstrap_rounds=400)
    strong, weak = board["contenders"]
    expected = 1.96 * 400 / math.log(10) / math.sqrt(300 * 0.21) / 2
    for contender in (strong, weak):
        half_width = (contender["ci_high"] - contender["ci_low"]) / 2
        assert half_width == pytest.approx(expected, rel=0.25), contender


def test_a_league_is_ranked_by_strength_with_the_mean_at_1000() -> None:
    board = leaderboard(_league())
    assert [c["name"] for c in board["contenders"]] == ["large", "medium", "small", "tiny"]
    assert np.mean([c["rating"] for c in board["contenders"]]) == pytest.approx(1000, abs=0.01)
    assert board["matrix"]["names"] == ["large", "medium", "small", "tiny"]


def test_the_gap_is_on_the_elo_scale() -> None:
    """Winning 3 of 4 votes is a 400*log10(3) = 191 point gap (the one-vote prior moves it a
    little with 400 votes)."""
    board = leaderboard(_votes("a-model", "b-model", 300, 100), bootstrap_rounds=0)
    first, second = board["contenders"]
    assert first["rating"] - second["rating"] == pytest.approx(400 * math.log10(3), abs=2)
    assert first["ci_low"] is None and first["ci_high"] is None


def test_ties_and_both_bad_give_equal_ratings() -> None:
    for votes in (_votes("x", "y", 0, 0, ties=6), _votes("x", "y", 0, 0, both_bad=5),
                  _votes("x", "y", 7, 7, ties=3, both_bad=2)):
        board = leaderboard(votes)
        x, y = _by_name(board)["x"], _by_name(board)["y"]
        assert x["rating"] == y["rating"] == 1000
        assert x["win_rate"] == y["win_rate"] == 0.5
    assert x["ties"] == 5 and x["wins"] == 7 and x["battles"] == 19


def test_one_who_won_every_vote_still_has_finite_numbers() -> None:
    votes = _votes("champion", "runner", 50, 0) + _votes("champion", "last", 20, 0)
    votes += _votes("runner", "last", 10, 0)
    board = leaderboard(votes)
    names = [c["name"] for c in board["contenders"]]
    assert names == ["champion", "runner", "last"]
    for contender in board["contenders"]:
        for key in ("rating", "ci_low", "ci_high"):
            assert math.isfinite(contender[key]), contender
    json.dumps(board, allow_nan=False)  # JSON-ready: plain numbers, no NaN or infinity
    assert board["contenders"][0]["win_rate"] == 1.0


def test_the_interval_contains_the_rating() -> None:
    rng = random.Random(7)
    small = [Battle(*rng.sample("pqrs", 2), rng.choice(["a", "a", "b", "tie"]))
             for _ in range(25)]
    for votes in (_league(), small, _votes("p", "q", 3, 1)):
        for contender in leaderboard(votes)["contenders"]:
            assert contender["ci_low"] <= contender["rating"] <= contender["ci_high"], contender


def test_the_board_is_the_same_for_a_seed_and_any_order_of_votes() -> None:
    votes = _league()
    shuffled = votes[:]
    random.Random(3).shuffle(shuffled)
    assert leaderboard(votes, seed=5) == leaderboard(shuffled, seed=5)
    assert leaderboard(votes, seed=5) != leaderboard(votes, seed=6)  # the intervals differ


def test_a_vote_between_a_model_and_itself_is_ignored() -> None:
    votes = _votes("m1", "m2", 6, 3)
    with_self = votes + [Battle("m1", "m1", "a"), Battle("m2", "m2", "tie")] * 5
    assert leaderboard(with_self) == leaderboard(votes)
    assert leaderboard([Battle("solo", "solo", "b")])["contenders"] == []


def test_the_matrix_by_hand() -> None:
    votes = [Battle("A", "B", "a"), Battle("B", "A", "b"), Battle("A", "B", "b"),
             Battle("B", "A", "tie"), Battle("C", "A", "a")]
    board = leaderboard(votes)
    matrix = board["matrix"]
    at = {name: k for k, name in enumerate(matrix["names"])}
    rate = lambda row, col: matrix["win_rate"][at[row]][at[col]]  # noqa: E731
    count = lambda row, col: matrix["battles"][at[row]][at[col]]  # noqa: E731
    assert rate("A", "B") == 0.625 and rate("B", "A") == 0.375   # 2 wins + a half of 4
    assert rate("C", "A") == 1.0 and rate("A", "C") == 0.0
    assert rate("B", "C") is None and rate("C", "B") is None    # never met
    assert all(rate(n, n) is None for n in "ABC")
    assert (count("A", "B"), count("B", "A"), count("A", "C"), count("B", "C")) == (4, 4, 1, 0)
    a = _by_name(board)["A"]
    assert (a["battles"], a["wins"], a["losses"], a["ties"], a["win_rate"]) == (5, 2, 2, 1, 0.5)
    assert matrix["names"] == [c["name"] for c in board["contenders"]]


def test_invalid_votes_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="both_bad"):
        Battle("x", "y", "draw")
    with pytest.raises(ValueError, match="two contender names"):
        Battle("", "y", "a")
    with pytest.raises(ValueError, match="Battle"):
        leaderboard([("x", "y", "a")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="bootstrap_rounds"):
        leaderboard([], bootstrap_rounds=-1)


def test_no_votes_give_an_empty_board() -> None:
    assert leaderboard([]) == {
        "contenders": [], "battles": 0, "method": "bradley-terry", "bootstrap_rounds": 200,
        "matrix": {"names": [], "win_rate": [], "battles": []}}


def _log_likelihood(theta: dict[str, np.ndarray], votes: list[Battle]) -> np.ndarray:
    """The objective the module documents, written out vote by vote: log P(each vote) with a
    draw as half a win each way, plus one virtual tie of every model against a reference at 0."""
    def log_sigmoid(x: np.ndarray) -> np.ndarray:
        return -np.logaddexp(0.0, -x)
    total = sum(0.5 * log_sigmoid(t) + 0.5 * log_sigmoid(-t) for t in theta.values())
    for vote in votes:
        diff = theta[vote.a] - theta[vote.b]
        if vote.winner == "a":
            total = total + log_sigmoid(diff)
        elif vote.winner == "b":
            total = total + log_sigmoid(-diff)
        else:
            total = total + 0.5 * log_sigmoid(diff) + 0.5 * log_sigmoid(-diff)
    return total


def _grid_maximum(votes: list[Battle], names: list[str], centre: np.ndarray, half: float,
                  steps: int) -> np.ndarray:
    axis = np.linspace(-half, half, steps)
    grids = np.meshgrid(*[c + axis for c in centre], indexing="ij")
    values = _log_likelihood(dict(zip(names, grids)), votes)
    best = np.unravel_index(np.argmax(values), values.shape)
    return np.array([g[best] for g in grids])


@pytest.mark.parametrize("votes", [
    _votes("A", "B", 5, 2, ties=1) + _votes("B", "C", 4, 3, both_bad=2) + _votes("A", "C", 6, 1),
    _votes("A", "B", 8, 0) + _votes("A", "C", 5, 0) + _votes("B", "C", 2, 3, ties=1),  # A swept
], ids=["mixed", "one-won-all"])
def test_ratings_maximise_the_likelihood_found_by_brute_force(votes: list[Battle]) -> None:
    names = ["A", "B", "C"]
    best = _grid_maximum(votes, names, np.zeros(3), 6.0, 61)        # steps of 0.2
    best = _grid_maximum(votes, names, best, 0.3, 61)                # then of 0.01
    best = _grid_maximum(votes, names, best, 0.01, 41)               # then of 0.0005
    expected = 1000 + 400 / math.log(10) * (best - best.mean())
    ratings = _by_name(leaderboard(votes, bootstrap_rounds=0))
    for name, want in zip(names, expected):
        assert ratings[name]["rating"] == pytest.approx(want, abs=0.2)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_the_win_rate_picture_shows_the_matrix() -> None:
    votes = _votes("A", "B", 3, 1) + _votes("A", "C", 1, 1) + _votes("D", "A", 2, 0)
    board = leaderboard(votes, bootstrap_rounds=20)
    figure = win_rate_figure(board)
    heatmap, colour_bar = figure.axes
    names = board["matrix"]["names"]
    assert [t.get_text() for t in heatmap.get_xticklabels()] == names
    assert [t.get_text() for t in heatmap.get_yticklabels()] == names
    assert "win rate" in heatmap.get_title()
    cells = [t.get_text() for t in heatmap.texts]
    assert len(cells) == 6 and "75%\n4 votes" in cells and "50%\n2 votes" in cells
    shown = heatmap.images[0].get_array()
    never_met = [[rate is None for rate in row] for row in board["matrix"]["win_rate"]]
    assert (np.ma.getmaskarray(shown) == np.array(never_met)).all()  # drawn grey
    assert colour_bar.get_ylabel().startswith("share of votes won")
    assert _png(figure).startswith(b"\x89PNG")


def test_the_ratings_picture_has_a_row_per_model_best_at_the_top() -> None:
    board = leaderboard(_league(), bootstrap_rounds=30)
    figure = ratings_figure(board)
    (axes,) = figure.axes
    labels = sorted(axes.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in labels] == ["large", "medium", "small", "tiny"]
    assert "240 votes" in axes.get_title()
    assert _png(figure).startswith(b"\x89PNG")


@pytest.mark.parametrize("draw", [win_rate_figure, ratings_figure])
def test_an_empty_board_draws_no_votes_yet(draw) -> None:
    figure = draw(leaderboard([]))
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    assert [t.get_text() for t in figure.axes[0].texts] == [NO_VOTES]
    assert _png(figure).startswith(b"\x89PNG")


def test_many_models_and_votes_fit_quickly_enough_to_compute_per_request() -> None:
    """Not a timing test: 10,000 votes among 12 models with 200 rounds gives a full board."""
    rng = random.Random(1)
    models = [f"model-{k}" for k in range(12)]
    pairs = list(itertools.combinations(models, 2))
    votes = [Battle(*rng.choice(pairs), rng.choice(["a", "b", "tie", "both_bad"]))
             for _ in range(10_000)]
    board = leaderboard(votes)
    assert len(board["contenders"]) == 12 and board["battles"] == 10_000
    assert sum(sum(row) for row in board["matrix"]["battles"]) == 20_000
