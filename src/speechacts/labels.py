"""The five speech-act labels, in the fixed order every model and metric uses."""

LABELS: tuple[str, ...] = ("threat", "demand", "denial", "offer", "assessment")
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))


def top_labels(proba) -> list[str]:
    """The most probable label of each row of an (n, 5) probability array, columns in LABELS order."""
    return [LABELS[i] for i in proba.argmax(axis=1).tolist()]
