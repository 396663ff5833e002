"""The five speech-act labels, in the fixed order every model and metric uses."""

LABELS: tuple[str, ...] = ("threat", "demand", "denial", "offer", "assessment")
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))
