"""What the models table and the recommendation show: one row per model, and the model to use
for chat and for code, with why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.models import fit as fitmod
from app.models import speed as speedmod
from app.models.catalog import CatalogModel, Quant


@dataclass
class ModelRow:
    """One line of the models table."""

    name: str
    quant: str
    size: int
    verdict: fitmod.FitVerdict | None
    installed: bool
    source: str
    backends: list[str] = field(default_factory=lambda: ["llama.cpp"])
    catalog_id: str = ""
    path: Path | None = None
    owner: str = ""  # for files on disk: tramontane, package, ollama, huggingface
    speed: speedmod.SpeedPrediction | None = None
    moe: str = ""  # a mixture of experts: memory against what a token reads, in words
    choice: bool = False  # the best quant that fits, when one model's quants are asked
    context_plan: list[fitmod.ContextStep] = field(default_factory=list)

    @property
    def ref_name(self) -> str:
        """The name `find`, `remove` and `use` take for this row."""
        return str(self.path) if self.source == "path" and self.path else self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "catalog_id": self.catalog_id, "quant": self.quant,
                "size": self.size, "installed": self.installed, "source": self.source,
                "backends": self.backends, "path": str(self.path) if self.path else None,
                "fit": self.verdict.to_dict() if self.verdict else None,
                "speed": self.speed.to_dict() if self.speed else None,
                "moe": self.moe or None, "choice": self.choice,
                "context_plan": [c.to_dict() for c in self.context_plan]}

    def words(self) -> str:
        """"fits in RAM · ~9 tok/s · 2k-token prompt in ~4 s"."""
        if self.verdict is None:
            return "unknown (damaged file?)"
        if not self.verdict.fits or self.speed is None:
            return self.verdict.words()
        return f"{self.verdict.words()} · {self.speed.words()}"


@dataclass
class Recommendation:
    purpose: str
    model: CatalogModel
    quant: Quant
    context: int
    verdict: fitmod.FitVerdict
    speed: speedmod.SpeedPrediction
    passed_over: list[str] = field(default_factory=list)  # bigger models, and why not them
    meets_target: bool = True

    def words(self) -> str:
        text = (f"{self.purpose}: {self.model.id} {self.quant.name}, context "
                f"{self.context:,} tokens ({self.verdict.words()} · {self.speed.words()})")
        if not self.meets_target:
            text += "; the fastest that fits, though slower than the target"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "model": self.model.id, "quant": self.quant.name,
                "context": self.context, "fit": self.verdict.to_dict(),
                "speed": self.speed.to_dict(), "meets_target": self.meets_target,
                "passed_over": self.passed_over}
