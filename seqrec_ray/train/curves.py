"""Training curves: per-epoch loss and validation metrics as JSON and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path


def save_curves(history: list[dict], directory: str | Path) -> tuple[Path, Path]:
    """Write ``curves.json`` and ``curves.png`` (loss; valid HR/NDCG@10) into directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, png_path = directory / "curves.json", directory / "curves.png"
    json_path.write_text(json.dumps(history, indent=2))
    plot_curves(history, png_path)
    return json_path, png_path


def plot_curves(history: list[dict], png_path: str | Path) -> None:
    # Imported here: matplotlib is slow to import and only the plot needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="loss")
    for key in ("hr@10", "ndcg@10"):
        values = [h.get("valid", {}).get(key) for h in history]
        if any(v is not None for v in values):
            ax_metric.plot(epochs, values, marker="o", label=f"valid {key}")
    ax_metric.set(xlabel="epoch", title="validation")
    ax_metric.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
