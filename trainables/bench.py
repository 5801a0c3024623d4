"""What one optimisation step of each method costs: time and peak memory, side by side.

    python -m trainables.bench --methods kd,metadistil,metadistil:meta_interval=4,reptile-distil \\
        --student-layers 3 --batch-size 32 --seq-len 64 --threads 1

Each entry of ``--methods`` is a method name with optional ``:key=value`` settings (any
:class:`~trainables.config.DistillConfig` field; ``--set`` applies to all). Every entry is built
as a run would be (same model loading, eager attention only where a meta-gradient needs it,
the engine's updaters) and timed through the engine's own step path
(:meth:`~trainables.engine.Engine.train_step`) on fixed random token batches of ``--seq-len``
tokens (no padding). Timing: ``--warmup`` steps per entry, then ``--rounds`` rounds in which the
entries take turns (the order rotates every round) running ``--steps`` steps each (rounded up to
whole ``meta_interval`` cycles, so each round has the method's mix of meta and plain steps); the table
shows each entry's median ms/step over rounds with the spread (min–max) and the ratio to the
uncached KD step (``kd:teacher_output_cache=false``, added when not listed), so ratios are
measured side by side in one run. Peak memory: each entry runs a few steps in a subprocess of
its own — CUDA ``max_memory_allocated``, CPU peak RSS (``VmHWM``; it includes the ~0.5 GB of
Python and torch every process has). ``--json FILE`` writes the rows.

``--phases`` also times the parts of one more round of each entry (on CUDA with the device
synchronised at every part's boundary) and prints the time of each labelled part of its step
(:mod:`trainables.phases`: teacher forward, student forward, backward + update, and for the meta
methods the inner step, the quiz pass and the meta backward), so a ratio can be read off the
parts it is made of.

``--teacher random:L:H:A:I`` benches a random-init BERT of L layers, hidden H, A heads and
intermediate size I (e.g. ``random:12:768:12:3072`` for BERT-base-shaped 12→6 with
``--student-layers 6``) instead of the packaged MiniLM. Nothing is downloaded or fine-tuned:
the cost of a step does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from trainables import phases
from trainables.config import DEFAULT_TEACHER
from trainables.errors import UserError, exit_on_user_error

REFERENCE = "kd:teacher_output_cache=false"


@dataclass
class Entry:
    label: str
    method: str
    settings: dict


def parse_entry(text: str, shared: dict) -> Entry:
    from trainables.methods import get_method

    name, *pairs = [p.strip() for p in text.split(":")]
    get_method(name)  # a clear error naming the valid methods
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--methods entry {text!r}: expected NAME[:key=value...], got {pair!r}")
    settings = {**shared}
    for pair in pairs:
        key, _, value = pair.partition("=")
        settings.update(_typed(key.strip(), value.strip()))
    return Entry(text, name, settings)


def _typed(key: str, value: str) -> dict:
    """``key=value`` typed by the config schema (hyperparameters and setup fields alike)."""
    from trainables.config import _fields, coerce

    fields = _fields()
    if key not in fields:
        raise UserError(f"unknown setting {key!r}; valid: {', '.join(fields)}")
    return {key: coerce(fields[key], value)}


def random_teacher(spec: str, folder: str) -> str:
    """A random-init BERT saved at ``folder`` from ``random:L:H:A:I``, with the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    from trainables.models import load_tokenizer, packaged_minilm_path

    try:
        layers, hidden, heads, inter = (int(x) for x in spec.split(":")[1:])
    except ValueError:
        raise UserError(f"--teacher {spec!r}: expected random:LAYERS:HIDDEN:HEADS:INTERMEDIATE") from None
    tokenizer = load_tokenizer(packaged_minilm_path())
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Bench:
    """One entry, built and ready to step."""

    def __init__(self, entry: Entry, args: argparse.Namespace, teacher: str):
        import torch

        from trainables import teacher_outputs
        from trainables.config import DistillConfig
        from trainables.engine import Engine, Loaders, resolve_device, seed_everything
        from trainables.methods import get_method
        from trainables.models import build_student, load_teacher
        from trainables.tasks import get_task

        cfg = DistillConfig(method=entry.method, teacher=teacher, student=args.student,
                            student_layers=args.student_layers, batch_size=args.batch_size,
                            max_seq_length=args.seq_len, device=args.device, bf16=args.bf16, epochs=1,
                            **entry.settings)
        self.cfg, self.entry = cfg, entry
        task = get_task(args.task)
        method_cls = get_method(cfg.method)
        device = resolve_device(cfg.device)
        eager = method_cls.double_backward(cfg)
        seed_everything(0)
        student = build_student(teacher, cfg.student, cfg.student_layers, task, eager=eager)
        teachers = ([load_teacher(teacher, task) for _ in range(cfg.num_teachers)]
                    if method_cls.uses_teacher else [])
        vocab = student.config.vocab_size
        g = torch.Generator().manual_seed(1)
        pool = args.warmup + args.steps

        def batch(start: int) -> dict:
            ids = torch.randint(1000, vocab, (cfg.batch_size, cfg.max_seq_length), generator=g)
            ids[:, 0] = 101
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
                    "labels": torch.randint(0, task.num_labels, (cfg.batch_size,), generator=g),
                    "row": torch.arange(start, start + cfg.batch_size)}

        self.train = [batch(i * cfg.batch_size) for i in range(pool)]
        quiz = [batch(0) for _ in range(cfg.num_quiz_batches)] if method_cls.needs_quiz else None
        method = method_cls(cfg, task, student, teachers)
        if teacher_outputs.usable(method_cls, cfg):
            method.cached_teacher_outputs = teacher_outputs.compute(
                [t.to(device) for t in teachers], self.train, device, layers=method.cached_layers(),
                bf16=cfg.bf16, num_rows=pool * cfg.batch_size)
        self.engine = Engine(cfg, task, method, Loaders(train=self.train, dev=[], quiz=quiz), device)
        self.quiz = _cycle(quiz) if quiz else None
        self.device = device
        self._next = 0

    def steps_per_round(self, steps: int) -> int:
        """``steps`` rounded up to whole ``meta_interval`` cycles, so every round of a method that
        meta-steps every k-th step holds the same mix of meta and plain steps."""
        k = max(1, int(self.cfg.meta_interval))
        return -(-steps // k) * k

    def run(self, steps: int) -> None:
        engine = self.engine
        for _ in range(steps):
            logs = engine.train_step(self.train[self._next % len(self.train)], self.quiz)
            engine._unread.append((engine.step, logs))
            engine.step += 1
            self._next += 1
        engine._flush()  # the engine reads step logs once per log interval: part of the cost
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()


def _cycle(items):
    while True:
        yield from items


def time_entries(benches: list[Bench], args: argparse.Namespace) -> dict[str, list[float]]:
    """ms/step of every entry in each round (interleaved, rotating order)."""
    for b in benches:
        b.run(args.warmup)
    times: dict[str, list[float]] = {b.entry.label: [] for b in benches}
    for r in range(args.rounds):
        order = benches[r % len(benches):] + benches[:r % len(benches)]
        for b in order:
            steps = b.steps_per_round(args.steps)
            start = time.perf_counter()
            b.run(steps)
            times[b.entry.label].append(1000 * (time.perf_counter() - start) / steps)
    return times


def peak_memory_mb(entry: Entry, args: argparse.Namespace, teacher: str) -> float | None:
    """Peak memory of the entry's steps, in a subprocess of its own."""
    cmd = [sys.executable, "-m", "trainables.bench", "--child", entry.label, "--teacher", teacher,
           "--student-layers", str(args.student_layers), "--batch-size", str(args.batch_size),
           "--seq-len", str(args.seq_len), "--device", args.device, "--threads", str(args.threads),
           "--task", args.task, "--warmup", "1", "--steps", "2", "--rounds", "1",
           *(["--student", args.student] if args.student else []), *(["--bf16"] if args.bf16 else []),
           *[x for s in args.assignments for x in ("--set", s)]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"memory of {entry.label}: the subprocess failed: {done.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def _child(entry: Entry, args: argparse.Namespace, teacher: str) -> None:
    import torch

    bench = Bench(entry, args, teacher)
    if bench.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    bench.run(args.warmup + args.steps)
    if bench.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        from trainables.profiling import peak_rss_mb

        peak = peak_rss_mb()
    print(json.dumps({"peak_mb": peak}))


def table(rows: list[dict]) -> str:
    lines = ["| method | ms/step (median) | spread | × KD | peak MB | × KD |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = "–" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        mem_ratio = "–" if r.get("peak_ratio") is None else f"{r['peak_ratio']:.2f}"
        lines.append(f"| {r['method']} | {r['ms_per_step']:.1f} | {r['ms_min']:.1f}–{r['ms_max']:.1f} | "
                     f"{r['time_ratio']:.2f} | {mem} | {mem_ratio} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainables.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="kd,metadistil,reptile-distil",
                   help="comma-separated NAME[:key=value...] entries (default kd,metadistil,reptile-distil)")
    p.add_argument("--teacher", default=DEFAULT_TEACHER, help="teacher backbone, or random:L:H:A:I")
    p.add_argument("--student", default=None, help="student model (default: the first k teacher layers)")
    p.add_argument("--student-layers", type=int, default=3, help="k (default 3)")
    p.add_argument("--task", default="sst2", help="sets the number of labels (default sst2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--warmup", type=int, default=3, help="steps per entry before timing (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=3, help="steps per entry per round (default 3)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for every entry")
    p.add_argument("--no-memory", action="store_true", help="skip the per-entry memory subprocesses")
    p.add_argument("--phases", action="store_true",
                   help="also time the parts of one more round of each entry and print where its step's "
                        "time goes (the labelled parts of trainables.phases)")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)  # --help loads no torch
    import torch

    for name in ("batch_size", "seq_len", "threads", "rounds", "steps", "student_layers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    shared = {}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set expects key=value, got {item!r}")
        shared.update(_typed(key.strip(), value.strip()))
    teacher = args.teacher
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
        if teacher.startswith("random:"):
            teacher = random_teacher(teacher, tmp)
        if args.child:
            _child(parse_entry(args.child, shared), args, teacher)
            return []
        labels = [m.strip() for m in args.methods.split(",") if m.strip()]
        if REFERENCE not in labels:
            labels.insert(0, REFERENCE)
        entries = [parse_entry(text, shared) for text in labels]
        from trainables import allocator

        allocator.tune()  # as in training
        benches = [Bench(e, args, teacher) for e in entries]
        times = time_entries(benches, args)
        sync = torch.cuda.synchronize if args.device == "cuda" else None
        parts = {b.entry.label: phases.profile_phases(lambda b=b: b.run(b.steps_per_round(args.steps)),
                                                      b.steps_per_round(args.steps), sync)
                 for b in benches} if args.phases else {}
        memory = {e.label: None if args.no_memory else peak_memory_mb(e, args, teacher) for e in entries}
    ref_ms = statistics.median(times[REFERENCE])
    ref_mem = memory[REFERENCE]
    rows = []
    for e in entries:
        ms = times[e.label]
        med = statistics.median(ms)
        rows.append({"method": e.label, "ms_per_step": med, "ms_min": min(ms), "ms_max": max(ms),
                     "time_ratio": med / ref_ms, "peak_mb": memory[e.label],
                     "peak_ratio": memory[e.label] / ref_mem if memory[e.label] and ref_mem else None,
                     "device": args.device, "bf16": args.bf16, "threads": args.threads,
                     "batch_size": args.batch_size, "seq_len": args.seq_len, "teacher": args.teacher,
                     "student_layers": args.student_layers, **({"phases": parts[e.label]} if parts else {})})
    print(f"one step, {args.device}{' bf16' if args.bf16 else ''}, {args.threads} thread(s), teacher "
          f"{args.teacher}, student {args.student or f'first {args.student_layers} layers'}, batch "
          f"{args.batch_size} x {args.seq_len} tokens; median of {args.rounds} interleaved rounds of "
          f"{args.steps} steps; ratios to {REFERENCE}")
    print(table(rows))
    if parts:
        print("\nwhere a step's time goes (one more round per entry, its parts timed):\n")
        print(phases.table(parts))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
