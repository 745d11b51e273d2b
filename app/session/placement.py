"""Where a model will run before it is loaded: the fit verdict for this machine decides how many
layers go to the GPU, and a model that does not fit is named with its numbers before any
memory is taken (the CLI refuses unless --force, the app asks)."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import TramontaneError
from app.models import fit
from app.models.gguf_file import GGUFHeader, arch_of, read_header
from app.models.hardware import Hardware
from app.models.local import LocalModel
from app.sizes import human_size


class DoesNotFitError(TramontaneError):
    """A model that needs more memory than this machine has."""


@dataclass(frozen=True)
class LoadPlan:
    verdict: fit.FitVerdict | None  # None: the file's header could not be read for an estimate

    @property
    def gpu_layers(self) -> int:
        return self.verdict.estimate.gpu_layers if self.verdict and self.verdict.fits else 0

    @property
    def fits(self) -> bool:
        return self.verdict is None or self.verdict.fits

    def beside(self, draft: GGUFHeader, hw: Hardware) -> LoadPlan:
        """This plan with a draft model (speculative decoding) loaded in the same worker."""
        if self.verdict is None:
            return self
        return LoadPlan(fit.with_draft(self.verdict, arch_of(draft), draft.tensor_bytes,
                                       draft.repack_bytes, hw))

    def warning(self, name: str) -> str:
        """One line with the numbers, when the model does not fit; "" when it does."""
        if self.fits or self.verdict is None:
            return ""
        e = self.verdict.estimate
        room = self.verdict.ram_limit + self.verdict.vram_limit
        with_draft = f" with its draft model ({human_size(e.draft)})" if e.draft else ""
        return (f"{name}{with_draft} needs about {human_size(e.total)} at {e.context:,} tokens of "
                "context "
                f"(weights {human_size(e.weights)}, KV cache {human_size(e.kv_cache)}), but this "
                f"machine can give it {human_size(room)}; loading it may swap or be killed. "
                "A smaller quant or context fits better (`tramontane models fit`).")


def plan_load(model: LocalModel, context_length: int, hw: Hardware,
              gpu_layers: int = -1) -> LoadPlan:
    """The placement for `model` at `context_length`: all layers on the GPU, some, or none, as
    the fit verdict finds; `gpu_layers` >= 0 is the user's own choice."""
    if not model.path.is_file():
        return LoadPlan(None)
    try:
        head = read_header(model.path)
    except TramontaneError:
        return LoadPlan(None)  # the load itself will say what is wrong with the file
    chosen = gpu_layers if gpu_layers >= 0 else None
    return LoadPlan(fit.verdict(arch_of(head), head.tensor_bytes, context_length, hw, chosen,
                                repack=head.repack_bytes))
