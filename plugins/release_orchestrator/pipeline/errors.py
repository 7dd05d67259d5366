"""SpecError: a problem in a pipeline spec, located as precisely as we know (file:line, stage, action, field)."""

from __future__ import annotations


class SpecError(Exception):
    """One problem, or several (``errors``), in a pipeline spec.

    str() of a single error reads like
    ``include/pipelines/x.yaml:42: stage 'Build', action 'Compile', field 'configuration.project_name': missing
    required key; allowed keys: ...``; str() of a combined error shows each problem on its own line.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        stage: str | None = None,
        action: str | None = None,
        field: str | None = None,
        pipeline: str | None = None,
        errors: list[SpecError] | None = None,
    ):
        self.message = message
        self.file = file
        self.line = line
        self.stage = stage
        self.action = action
        self.field = field
        self.pipeline = pipeline  # named in str() only when there is no file to point at
        self.errors: list[SpecError] = list(errors) if errors else [self]
        super().__init__(str(self))

    @classmethod
    def combine(cls, errors: list[SpecError]) -> SpecError:
        """One exception to raise for a list of problems (the list itself is kept in ``errors``)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        return cls(f"{len(errors)} problems", file=first.file, pipeline=first.pipeline, errors=errors)

    def __str__(self) -> str:
        if self.errors != [self]:
            return "\n".join(str(e) for e in self.errors)
        where = self.file or (f"pipeline '{self.pipeline}'" if self.pipeline else "")
        if self.line:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        context = []
        if self.stage is not None:
            context.append(f"stage '{self.stage}'")
        if self.action is not None:
            context.append(f"action '{self.action}'")
        if self.field:
            context.append(f"field '{self.field}'")
        parts = [p for p in (where, ", ".join(context)) if p]
        return ": ".join([*parts, self.message])

    def __reduce__(self):
        # Exceptions with keyword-only arguments do not pickle by default; keep them picklable for worker processes.
        return _rebuild, (self.message,), self.__dict__


def _rebuild(message: str) -> SpecError:
    return SpecError(message)
