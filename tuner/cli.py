"""``distill-tune COMMAND [options]``: one console script for every entry point, beside the
``python -m ...`` forms (the same options). A command's module is imported only when it runs, so
``distill-tune --help`` starts without loading torch, Ray or MLflow.
"""

from __future__ import annotations

import importlib
import sys

#: command -> (module whose ``main(argv)`` runs it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "launch": ("tuner.launch", "run (or resume) a hyperparameter sweep of one method or several"),
    "run": ("trainables.run", "train one configuration without Ray"),
    "study": ("tuner.study", "a sensitivity study (loss weight, temperature, student size)"),
    "reproduce": ("tuner.reproduce", "the papers' comparison: equal-budget sweeps per method and task"),
    "compare": ("analysis.compare", "the method comparison table from the MLflow runs"),
    "dynamics": ("analysis.dynamics", "alpha/beta and teacher/student curves against the step"),
    "importance": ("analysis.importance", "hyperparameter importances and recommendations"),
    "method-search": ("analysis.method_search", "a multi-method sweep: each method's best score against trials and seconds"),
    "schedule": ("analysis.schedule", "a population-based training trial's alpha/T/lr schedule against the step"),
    "paper-table": ("analysis.paper_table", "per-seed results -> the papers' table"),
    "pareto": ("analysis.pareto", "a multi-objective sweep's Pareto front (table, figure) from MLflow"),
    "bench": ("trainables.bench", "time and memory of one training step per method"),
    "bench-sweep": ("tuner.bench_sweep", "trials/hour at 1, 2 and 4 trials per GPU"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: distill-tune COMMAND [options]   (distill-tune COMMAND --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}  (python -m {module})" for name, (module, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"distill-tune: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


def entry() -> None:
    """The console script: the command's exit status (0 for a command that returns a result)."""
    result = main()
    raise SystemExit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    entry()
