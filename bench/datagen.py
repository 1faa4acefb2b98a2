"""Seeded random decisions of realistic sizes, shared by every benchmark."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

from angles.engines.decision_model import PRIORITIES, TYPES, utc_now

WORDS = (
    "adopt migrate postgres notion sync latency budget security review vendor contract rollout staging "
    "incident retro hiring roadmap quarterly customer privacy encryption backup restore monitoring alert "
    "gpt analysis cost ethics fairness audit product launch pricing api deprecate refactor cache queue "
    "überprüfung décision 決定 решение تصميم 🚀"
).split()


# The columns make_decisions fills, in the order the benchmarks COPY them into PostgreSQL.
COPY_COLUMNS = (
    "id",
    "decision",
    "date",
    "type",
    "priority",
    "tags",
    "active",
    "comment",
    "type_source",
    "created_at",
    "updated_at",
)


def decision_text(rng: random.Random) -> str:
    # Most decisions are a paragraph; a few are long memos.
    n = rng.choice((8, 20, 40, 80, 160)) if rng.random() > 0.02 else rng.randint(800, 3000)
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_decisions(count: int, seed: int = 42):
    """Yield `count` valid decision dicts, the same ones for the same seed."""
    rng = random.Random(seed)
    start = date(2024, 1, 1)
    now = utc_now()
    for _ in range(count):
        yield {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "decision": decision_text(rng),
            "date": (start + timedelta(days=rng.randint(0, 900))).isoformat(),
            "type": rng.choice(TYPES),
            "priority": rng.choice((*PRIORITIES, None)),
            "tags": rng.sample(("infra", "ai", "people", "cost", "risk", "legal"), rng.randint(0, 3)),
            "active": rng.random() > 0.1,
            "comment": None if rng.random() < 0.6 else " ".join(rng.choice(WORDS) for _ in range(12)),
            "type_source": "person",
            "created_at": now,
            "updated_at": now,
        }
