"""What the config checker finds: problems (the run stops) and warnings, each with its place."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = ["ConfigError", "ConfigProblem", "format_problems"]


@dataclasses.dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config, at its place (``model.init_args.loss_fn.params.smoth``).

    Example:
        >>> str(ConfigProblem("trainer.max_stepz", "unknown argument; did you mean 'max_steps'?"))
        "trainer.max_stepz: unknown argument; did you mean 'max_steps'?"
    """

    place: str
    message: str

    def __str__(self) -> str:
        if not self.place:
            return self.message
        message = self.message.replace("\n", "\n    ")
        return f"{self.place}: {message}"


class ConfigError(ValueError):
    """A config has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(format_problems(self.problems))


def format_problems(problems: Sequence[ConfigProblem]) -> str:
    """The report printed for a bad config: a count, then one problem per line.

    Example:
        >>> print(format_problems([ConfigProblem("data.init_args.data_dir", "not found: x")]))
        the config has 1 problem (nothing was built or written):
          - data.init_args.data_dir: not found: x
    """
    noun = "problem" if len(problems) == 1 else "problems"
    lines = [f"the config has {len(problems)} {noun} (nothing was built or written):"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)
