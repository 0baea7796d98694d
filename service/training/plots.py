"""Training curves drawn with Pillow (no plotting library needed): loss and validation score."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 720, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 56, 34, 40
LOSS_COLOUR = (31, 119, 180)
SCORE_COLOUR = (214, 39, 40)
GRID = (225, 225, 225)
TEXT = (40, 40, 40)


def training_curves_png(
    losses: Sequence[float], scores: Sequence[float], *, score_name: str = "val Dice"
) -> bytes:
    """Return a PNG with the training loss (left axis) and a validation score (right, 0-1)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, top = MARGIN_LEFT, MARGIN_TOP
    right, bottom = WIDTH - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM
    for i in range(6):
        y = top + (bottom - top) * i / 5
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((right + 6, y - 6), f"{1 - i / 5:.1f}", fill=SCORE_COLOUR)
    draw.rectangle([left, top, right, bottom], outline=TEXT)
    n = max(len(losses), len(scores), 2)
    loss_max = max([*losses, 1e-6])

    def x_at(i: int) -> float:
        return left + (right - left) * i / (n - 1)

    def plot(values: Sequence[float], high: float, colour: tuple[int, int, int]) -> None:
        points = [(x_at(i), bottom - (bottom - top) * v / high) for i, v in enumerate(values)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        elif points:
            draw.ellipse(
                [points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2],
                fill=colour,
            )

    plot(losses, loss_max, LOSS_COLOUR)
    plot([min(max(s, 0.0), 1.0) for s in scores], 1.0, SCORE_COLOUR)
    for i in range(6):
        y = top + (bottom - top) * i / 5
        draw.text((6, y - 6), f"{loss_max * (1 - i / 5):.2f}", fill=LOSS_COLOUR)
    draw.text((left, 10), "training loss", fill=LOSS_COLOUR)
    draw.text((left + 120, 10), score_name, fill=SCORE_COLOUR)
    draw.text(((left + right) // 2 - 20, bottom + 14), f"epoch (1-{len(losses)})", fill=TEXT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


TRAIN_COLOUR = (31, 119, 180)
VALIDATION_COLOUR = (214, 39, 40)
PANEL_WIDTH = 420


def train_validation_curves_png(
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    train_score: Sequence[float],
    val_score: Sequence[float],
    *,
    score_name: str = "AUROC",
    title: str = "",
) -> bytes:
    """Return a PNG of two panels per epoch: loss (train vs validation) and a 0–1 score
    (train vs validation)."""
    image = Image.new("RGB", (2 * PANEL_WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    losses = [v for v in (*train_loss, *val_loss) if v == v]  # drop NaN
    high = max([*losses, 1e-6])
    _panel(draw, 0, "loss", (train_loss, val_loss), 0.0, high)
    _panel(draw, PANEL_WIDTH, score_name, (train_score, val_score), 0.0, 1.0)
    for offset, label, colour in (
        (0, "train", TRAIN_COLOUR),
        (80, "validation", VALIDATION_COLOUR),
    ):
        x = MARGIN_LEFT + offset
        draw.line([(x, HEIGHT - 10), (x + 16, HEIGHT - 10)], fill=colour, width=2)
        draw.text((x + 20, HEIGHT - 16), label, fill=colour)
    if title:
        draw.text((PANEL_WIDTH + MARGIN_LEFT, HEIGHT - 16), title, fill=TEXT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _panel(
    draw: ImageDraw.ImageDraw,
    x0: int,
    name: str,
    series: tuple[Sequence[float], Sequence[float]],
    low: float,
    high: float,
) -> None:
    """Draw one panel: axes, grid, y labels, and the train and validation series."""
    left, top = x0 + MARGIN_LEFT, MARGIN_TOP
    right, bottom = x0 + PANEL_WIDTH - 16, HEIGHT - MARGIN_BOTTOM
    for i in range(6):
        y = top + (bottom - top) * i / 5
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((x0 + 6, y - 6), f"{high - (high - low) * i / 5:.2f}", fill=TEXT)
    draw.rectangle([left, top, right, bottom], outline=TEXT)
    n = max(max(len(s) for s in series), 2)
    draw.text((left, 10), name, fill=TEXT)
    draw.text(((left + right) // 2 - 20, bottom + 4), f"epoch (1-{n})", fill=TEXT)
    for values, colour in zip(series, (TRAIN_COLOUR, VALIDATION_COLOUR), strict=True):
        points = [
            (
                left + (right - left) * i / (n - 1),
                bottom - (bottom - top) * (min(max(v, low), high) - low) / (high - low),
            )
            for i, v in enumerate(values)
            if v == v  # NaN (an undefined AUROC) is left out
        ]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
