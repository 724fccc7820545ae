"""The errors the loss registry raises, all ``ValueError``s, and how a validation becomes one.

- :class:`UnknownLossError`: no loss under that name (with the closest names).
- :class:`LossConfigError`: bad arguments for a loss; one :class:`ArgumentProblem` per argument.
- :class:`LossRegistrationError`: a registration that would replace, shadow or not validate.
- :class:`LossMismatchError`: a loss that cannot take what its caller (a model) feeds it.

and one warning, :class:`LossTaskWarning`: a loss registered only for other tasks than the
model's, which fits what the model feeds.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

__all__ = [
    "ArgumentProblem",
    "LossConfigError",
    "LossMismatchError",
    "LossRegistrationError",
    "LossTaskWarning",
    "UnknownLossError",
    "problems_from_validation_error",
]


class UnknownLossError(ValueError):
    """No loss is registered under the requested name or alias."""


class LossRegistrationError(ValueError):
    """A registration would silently replace or shadow a loss, or could not be validated."""


class LossMismatchError(ValueError):
    """A loss cannot take what its caller feeds it; raised when the caller is built.

    The message names the caller's argument, the loss, what the loss takes, what the caller
    feeds, and the registered losses that fit.

    Attributes:
        argument: The caller's loss argument (``loss_fn``, ``mask_loss_fn``, ``reg_loss``, ...).
        loss: The loss's registry name (its class name when it is not registered).
        fitting: The registered losses that fit the argument.
    """

    def __init__(self, message: str, *, argument: str, loss: str, fitting: Sequence[str]) -> None:
        super().__init__(message)
        self.argument = argument
        self.loss = loss
        self.fitting = tuple(fitting)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its attributes (DDP, workers)
        return (
            _rebuild_mismatch,
            (str(self), self.argument, self.loss, self.fitting),
        )


def _rebuild_mismatch(
    message: str, argument: str, loss: str, fitting: tuple[str, ...]
) -> LossMismatchError:
    return LossMismatchError(message, argument=argument, loss=loss, fitting=fitting)


class LossTaskWarning(UserWarning):
    """The chosen loss fits what the model feeds but is registered only for other tasks."""


@dataclasses.dataclass(frozen=True)
class ArgumentProblem:
    """One thing wrong with the arguments given for a loss."""

    argument: str
    message: str
    expected: str | None = None
    given: Any = None
    suggestion: str | None = None

    def __str__(self) -> str:
        text = f"{self.argument}: {self.message}"
        if self.suggestion:
            text += f"; did you mean {self.suggestion!r}?"
        return text


class LossConfigError(ValueError):
    """Arguments for a registered loss failed validation; lists every problem at once.

    Attributes:
        loss_name: The registry name of the loss.
        problems: One :class:`ArgumentProblem` per bad, unknown or missing argument.
    """

    def __init__(
        self,
        loss_name: str,
        problems: Sequence[ArgumentProblem],
        *,
        where: str = "",
        accepted: str = "",
    ) -> None:
        self.loss_name = loss_name
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"Invalid arguments for loss {loss_name!r}{where} ({count} {noun}):"]
        lines += [f"  - {p}" for p in self.problems]
        if accepted:
            lines.append(f"Accepted arguments: {accepted}")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:  # keep the error picklable (DDP, multiprocessing)
        return (_rebuild_config_error, (self.loss_name, self.problems, str(self)))


def _rebuild_config_error(
    loss_name: str, problems: tuple[ArgumentProblem, ...], message: str
) -> LossConfigError:
    error = LossConfigError.__new__(LossConfigError)
    ValueError.__init__(error, message)
    error.loss_name = loss_name
    error.problems = problems
    return error


def _given(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


_CONSTRAINT_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
        "literal_error",
        "multiple_of",
        "finite_number",
        "enum",
    }
)


def problems_from_validation_error(
    error: ValidationError, *, expected: Mapping[str, str], given: Mapping[str, Any]
) -> list[ArgumentProblem]:
    """Group pydantic's per-branch errors into one problem per argument, in a stable order.

    A validator that raised a :class:`LossConfigError` (a parameter type that checks several
    things, such as the terms of ``weighted_sum``) contributes its own problems as they are.

    Args:
        error: What the loss's schema raised.
        expected: Each parameter's rendered type (``float >= 0``), which is also the list of
            names that "did you mean" picks from.
        given: The arguments as the caller gave them, shown in the message as given.
    """
    by_argument: dict[str, list[Any]] = {}
    problems: list[ArgumentProblem] = []
    for item in error.errors(include_url=False):
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, LossConfigError):  # a parameter type that states its own problems
            problems.extend(cause.problems)
            continue
        loc = item.get("loc") or ("<arguments>",)
        by_argument.setdefault(str(loc[0]), []).append(item)
    for argument, items in by_argument.items():
        kinds = {item["type"] for item in items}
        if "extra_forbidden" in kinds:
            close = difflib.get_close_matches(argument, list(expected), n=1, cutoff=0.6)
            problems.append(
                ArgumentProblem(
                    argument,
                    "unknown argument",
                    given=given.get(argument),
                    suggestion=close[0] if close else None,
                )
            )
        elif "missing" in kinds:
            wanted = expected.get(argument)
            message = "missing required argument" + (f" (expected {wanted})" if wanted else "")
            problems.append(ArgumentProblem(argument, message, expected=wanted))
        else:
            wanted = expected.get(argument, "a valid value")
            value = given.get(argument)
            detail = next(
                (item["msg"] for item in items if item["type"] in _CONSTRAINT_ERRORS), None
            )
            if detail is None:  # a validator's own message, e.g. from a Tensor parameter
                detail = next(
                    (str(i["ctx"]["error"]) for i in items if i["type"] == "value_error"), None
                )
            message = f"expected {wanted}, got {_given(value)}"
            if detail:
                message += f" ({detail[0].lower()}{detail[1:]})"
            problems.append(ArgumentProblem(argument, message, expected=wanted, given=value))
    return problems
