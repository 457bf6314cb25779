"""Comparisons: one prompt answered by two sides (two models, or one model with two settings),
each side a normal durable conversation; blind until the vote; the votes make the leaderboard."""
