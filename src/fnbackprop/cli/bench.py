"""`fnbackprop bench`: the tables on the terminal, JSON and plots in --out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from rich.table import Table

from .common import console, error, not_applicable, positive_int, status_console, verdict_text


#: the options each part of the benchmark reads (beyond --out and --quick)
MODE_OPTIONS = {"conv_only": ("rounds",), "gpt_only": ("rounds", "data_path"), "rnn_only": ("rounds",), "memory": (), "tp": (),
                "all": ("rounds", "gpu", "torch_compile", "data_path")}
PARTS = tuple(mode for mode in MODE_OPTIONS if mode != "all")  # the options that pick one part


def refusal(args: argparse.Namespace) -> str | None:
    """Why this benchmark command line cannot run as written (one line), or None."""
    modes = [m for m in PARTS if m in args.given]
    if len(modes) > 1:
        return " and ".join("--" + m.replace("_", "-") for m in modes) + " each pick one part of the benchmark: give one"
    mode = modes[0] if modes else "all"
    takes = {"out", "quick", *modes, *MODE_OPTIONS[mode]}
    return not_applicable(args.given, set(args.given) - takes,
                          "to --" + mode.replace("_", "-") if mode != "all" else "to the whole benchmark")


def run_bench(args: argparse.Namespace) -> int:
    """The benchmark: tables on the terminal, JSON and a PNG plot in --out."""
    from ..bench.mlp import run_benchmark, targets, write_plot
    from ..bench.timing import torch_module

    reason = refusal(args)
    if reason:
        error("bench", reason)
        return 2
    if args.data_path is not None:
        from ..train.data import find_mnist
        from ..train.lm import find_text

        try:
            (find_text if args.gpt_only else find_mnist)(args.data_path)
        except FileNotFoundError as err:
            error("bench", str(err))
            return 2
    if torch_module() is None:
        console.print("PyTorch is not installed: its columns are skipped (pip install \".[torch]\" to add them)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tp:
        return _bench_tp(args, out)
    if not (args.memory or args.gpt_only or args.rnn_only):  # the conv benchmark splits each batch across the cores
        from ..bench.conv import one_device_per_core
        one_device_per_core()
    if args.memory:
        return _write_bench(args, out, _bench_memory(args, out))
    if args.gpt_only:
        return _write_bench(args, out, _bench_gpt(args, {}))
    if args.conv_only:
        return _write_bench(args, out, _bench_conv(args, {}))
    if args.rnn_only:
        return _write_bench(args, out, _bench_rnn(args, {}))
    try:
        with status_console.status("benchmarking...", spinner="dots") as spinner:
            results = run_benchmark(args.quick, args.gpu, args.torch_compile, args.data_path, args.rounds,
                                    on_config=lambda name: spinner.update(f"benchmarking {name}..."))
    except RuntimeError as err:
        error("bench", str(err))
        return 2
    limit = results["matmul_limit"]
    console.print(f"matmul limit (float32 through JAX, best of 2048^2 and 4096^2): {limit['best_gflops']:.0f} GFLOP/s "
                  f"(numpy 4096^2: {limit['numpy_4096_gflops']:.0f}); {results['machine']['processor']}, "
                  f"{results['machine']['backend']}, {results['rounds']} interleaved rounds")
    table = Table(title="per SGD step (medians of interleaved rounds; compile time apart)")
    for col in ("configuration", "implementation", "ms / step", "IQR (ms)", "GFLOP/s", "% of limit", "peak MB", "compile s",
                "XLA dots/fusions"):
        table.add_column(col, justify="left" if col in ("configuration", "implementation") else "right")
    for c in results["configs"]:
        for impl, t in c["per_step_seconds"].items():
            mem = c["peak_bytes"].get(impl)
            comp = c["compile_seconds"].get(impl)
            xla = c["xla_step"].get(impl)
            table.add_row(c["config"]["name"], impl, f"{1e3 * t['median']:.3f}", f"{1e3 * t['q1']:.3f}-{1e3 * t['q3']:.3f}",
                          f"{t['gflops']:.1f}", f"{100 * t['fraction_of_limit']:.0f}%",
                          "-" if mem is None else f"{mem / 2**20:.1f}", "-" if comp is None else f"{comp:.2f}",
                          f"{xla['dots']}/{xla['kernels']}" if xla else "")
        table.add_row(c["config"]["name"], "[bold]hand / jax.grad[/bold]", f"{c['hand_over_autodiff']['median']:.3f}",
                      f"{c['hand_over_autodiff']['q1']:.3f}-{c['hand_over_autodiff']['q3']:.3f}", "", "", "", "", "",
                      end_section=True)
    console.print(table)
    epoch = results["nielsen_epoch"]
    if epoch:
        et = Table(title=f"one epoch of Nielsen's [784,30,10], batch 10, fresh shuffle; data: {epoch['data']}"
                         + (f"; baselines extrapolated from {epoch['extrapolated_from_examples']} examples"
                            if epoch["extrapolated_from_examples"] else ""))
        for col in ("implementation", "s / epoch (median)", "IQR (s)"):
            et.add_column(col)
        for impl, t in epoch["seconds_per_epoch"].items():
            et.add_row(impl, f"{t['median']:.3f}", f"{t['q1']:.3f}-{t['q3']:.3f}")
        console.print(et)
    _print_targets("targets: the MLP step", targets(results))
    suffix = "-quick" if args.quick else ""
    write_plot(results, out / f"bench{suffix}.png")
    console.print(f"plot: {out / f'bench{suffix}.png'}")
    return _write_bench(args, out, _bench_rnn(args, _bench_gpt(args, _bench_conv(args, results))))


def _print_targets(title: str, rows: list[tuple[str, bool, str]]) -> None:
    """A table of (target, met, measured) rows, each with its verdict."""
    table = Table(title=title)
    for col in ("target", "measured", "verdict"):
        table.add_column(col)
    for name, ok, measured in rows:
        table.add_row(name, measured, verdict_text(ok))
    console.print(table)


def _print_op_profile(title: str, rows: list[dict]) -> None:
    """A `fnbackprop.bench.timing.op_profile` as a table: operation, its result type and origin, ms per step."""
    table = Table(title=title)
    for col in ("operation", "result and origin", "ms per step"):
        table.add_column(col, justify="right" if col == "ms per step" else "left")
    for row in rows:
        table.add_row(row["op"], row["what"], f"{row['ms']:.2f}")
    console.print(table)


def _step_table(title: str, rows: list[dict], keys: tuple[str, str], extra: tuple[str, Callable]) -> Table:
    """ms per step of each contender by size: `keys` = (the size's key, the times' key) in each row;
    `extra` = (a column's name, (row, contender) -> its text)."""
    size, times = keys
    table = Table(title=title)
    for col in (size, "implementation", "ms / step", "IQR (ms)", extra[0]):
        table.add_column(col, justify="left" if col == "implementation" else "right")
    for r in rows:
        for name, t in r[times].items():
            table.add_row(str(r[size]), name, f"{t['median']:.2f}", f"{t['q1']:.2f}-{t['q3']:.2f}", extra[1](r, name),
                          end_section=name == list(r[times])[-1])
    return table


def _bench_conv(args: argparse.Namespace, results: dict) -> dict:
    """The conv network's step (`fnbackprop.bench.conv`): a table, the profile, the targets; `results` with "conv" added."""
    from ..bench.conv import conv_targets, run_conv_benchmark

    with status_console.status("benchmarking the conv network's step...", spinner="dots"):
        conv = run_conv_benchmark(args.quick, args.rounds)
    split = f"; JAX steps data-parallel over {conv[0]['devices']} CPU devices, one per core" if conv[0]["devices"] > 1 else ""
    console.print(_step_table(f"Nielsen's two-conv-pool network, per SGD step (medians of interleaved rounds, 100 steps a "
                              f"call{split})", conv, ("batch", "ms_per_step"),
                              ("s / 50k epoch", lambda r, name: f"{r['seconds_per_epoch_50k'][name]:.0f}")))
    for r in conv:
        pt = Table(title=f"where the hand-coded step's time goes, batch {r['batch']} (each layer jitted alone)")
        for col in ("layer", "forward ms", "backward ms"):
            pt.add_column(col, justify="left" if col == "layer" else "right")
        for row in r["profile"]:
            pt.add_row(row["layer"], f"{row['forward_ms']:.3f}", f"{row['backward_ms']:.3f}")
        console.print(pt)
        _print_op_profile(f"hand im2col on one device: the scanned step's costliest compiled operations, batch {r['batch']}",
                          r["op_profile"])
    _print_targets("targets: the conv step", conv_targets(conv))
    return {**results, "conv": conv}


def _bench_gpt(args: argparse.Namespace, results: dict) -> dict:
    """The GPT's training step (`fnbackprop.bench.gpt`): a table, the profile, the targets; `results` with "gpt" added."""
    from ..bench.gpt import gpt_targets, run_gpt_benchmark

    with status_console.status("benchmarking the GPT's step...", spinner="dots"):
        gpt = run_gpt_benchmark(args.quick, args.rounds)
    table = Table(title="GPT training step, AdamW (medians of interleaved rounds)")
    for col in ("size", "implementation", "ms / step", "IQR (ms)", "GFLOP / step", "% of matmul limit"):
        table.add_column(col, justify="left" if col in ("size", "implementation") else "right")
    for r in gpt:
        for name, t in r["ms_per_step"].items():
            table.add_row(r["size"], name, f"{t['median']:.1f}", f"{t['q1']:.1f}-{t['q3']:.1f}", f"{r['gflop_per_step']:.2f}",
                          f"{100 * r['fraction_of_matmul_limit'][name]:.0f}%", end_section=name == list(r["ms_per_step"])[-1])
    console.print(table)
    for r in gpt:
        for name, rows in r["profile"].items():
            _print_op_profile(f"{name}: the step's costliest compiled operations, {r['size']}", rows)
    _print_targets("targets: the GPT's step", gpt_targets(gpt))
    from ..bench.startup import measure_startup, startup_targets

    with status_console.status("timing start-up: fnbackprop train --model gpt, cold then warm, twice...", spinner="dots"):
        try:
            startup = measure_startup(args.data_path if args.gpt_only else None)  # else --data-path is MNIST
        except RuntimeError as err:
            console.print(f"start-up not measured: {err}")
            return {**results, "gpt": gpt}
    table = Table(title="start-up of `fnbackprop train --model gpt` (CPU preset, 10 iterations), cold (empty compile "
                        "cache) then warm, each a fresh process")
    for col in ("run", "to the first iteration (s)", "launch to exit (s)"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for i, (cold, warm) in enumerate(zip(startup["runs"]["cold"], startup["runs"]["warm"])):
        for kind, r in (("cold", cold), ("warm", warm)):
            table.add_row(f"{i + 1} {kind}", f"{r['first_iteration_s']:.1f}", f"{r['whole_s']:.1f}")
    console.print(table)
    _print_targets("targets: start-up", startup_targets(startup))
    return {**results, "gpt": gpt, "startup": startup}


def _bench_memory(args: argparse.Namespace, out: Path) -> dict:
    """The memory section (`fnbackprop.bench.memory`): attention against T, the head, the longest context in 2 GiB."""
    from ..bench.memory import plot_memory, run_memory_benchmark

    with status_console.status("measuring memory (compiling every step; a few minutes)...", spinner="dots"):
        results = run_memory_benchmark(args.quick)
    names = list(results["attention"][0]["peak_mib"])
    table = Table(title="attention step, batch 1, 2 heads, width 64: peak MiB (ms per step)")
    table.add_column("T", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for r in results["attention"]:
        table.add_row(f"{r['T']:,}", *(f"{r['peak_mib'][n]:.1f}" + (f" ({r['ms'][n]:.0f} ms)" if n in r["ms"] else "") for n in names))
    console.print(table)
    head = results["head"]
    ht = Table(title=f"cross-entropy head, N {head['N']:,} rows, V {head['V']:,}, d {head['d']}: peak MiB (ms per step)")
    for name in head["peak_mib"]:
        ht.add_column(name, justify="right")
    ht.add_row(*(f"{head['peak_mib'][n]:.1f}" + (f" ({head['ms'][n]:.0f} ms)" if n in head["ms"] else "") for n in head["peak_mib"]))
    ht.add_row(*(f"temporaries {head['temp_mib'][n]:.1f}" for n in head["peak_mib"]))
    console.print(ht)
    for name, check in head.get("process_peak", {}).items():
        console.print(f"  {name}: the process's resident set grew {check['measured_mib']:.0f} MiB during the step; XLA's plan: "
                      f"{check['xla_temp_plus_out_mib']:.0f} MiB of temporaries and outputs")
    step = results["gpt_step"]
    gt = Table(title="a whole GPT step, 4 x 128, context 1,024, batch 8: peak MiB (ms per step)")
    for name in step["peak_mib"]:
        gt.add_column(name, justify="right")
    gt.add_row(*(f"{step['peak_mib'][n]:.1f}" + (f" ({step['ms'][n]:.0f} ms)" if n in step["ms"] else "") for n in step["peak_mib"]))
    console.print(gt)
    console.print("longest context whose attention step fits 2 GiB: "
                  + ", ".join(f"{n} {t:,}" for n, t in results["longest_context_2GiB"].items()))
    _print_targets("targets: memory", results["targets"])
    suffix = "-quick" if args.quick else ""
    plot_memory(results, out / f"bench-memory{suffix}.png")
    console.print(f"plot: {out / f'bench-memory{suffix}.png'}")
    return {"memory": results}


def _bench_rnn(args: argparse.Namespace, results: dict) -> dict:
    """char-rnn's model's step and the memory of BPTT (`fnbackprop.bench.rnn`): tables and the targets;
    `results` with "rnn" and "bptt_memory" added."""
    from ..bench.rnn import measure_bptt_memory, rnn_targets, run_rnn_benchmark

    with status_console.status("benchmarking the LSTM's step...", spinner="dots"):
        rnn = run_rnn_benchmark(args.quick, args.rounds)
    console.print(_step_table("char-rnn's model (2-layer LSTM, vocabulary 65, batch 50, sequence 50), loss and every "
                              "gradient, medians of interleaved rounds", rnn, ("hidden", "ms"),
                              ("first loss", lambda r, name: f"{r['losses'][name]:.6f}")))
    _print_targets("targets: the LSTM's step", rnn_targets(rnn))
    with status_console.status("measuring the memory of BPTT (compiling each contender)...", spinner="dots"):
        memory = measure_bptt_memory(200, every=20) if args.quick else measure_bptt_memory()
    table = Table(title=f"BPTT through T = {memory['T']} steps, one LSTM layer of {memory['hidden']}, batch {memory['batch']}, "
                        "float32: peak memory (XLA's analysis: arguments, temporaries, outputs) and time")
    for col in ("implementation", "peak MiB", "temporaries MiB", "ms"):
        table.add_column(col, justify="left" if col == "implementation" else "right")
    for name, peak in memory["peak_mib"].items():
        table.add_row(name, f"{peak:.1f}", f"{memory['temp_mib'][name]:.1f}", f"{memory['ms'][name]:.0f}")
    console.print(table)
    return {**results, "rnn": rnn, "bptt_memory": memory}


def _bench_tp(args: argparse.Namespace, out: Path) -> int:
    """The tensor-parallel GPT's collectives per step, counted in its HLO (`fnbackprop.bench.tp`), beside Megatron's
    analysis and GSPMD's choice; on 8 CPU devices made here."""
    from ..parallel import ask_for_cpu_devices

    if ask_for_cpu_devices(8) < 8:
        error("bench", "--tp needs 8 devices and JAX has started with fewer: run it in a fresh process")
        return 2
    from ..bench.tp import measure_tp_communication

    with status_console.status("compiling the split step (tensor and sequence parallel) and GSPMD's...", spinner="dots"):
        results = measure_tp_communication()
    mib = 2.0 ** 20
    for name, found in [*((f"by hand, {k}", v) for k, v in results["hand"].items()), ("GSPMD (jax.jit, sharding annotations)", results["gspmd"])]:
        table = Table(title=f"{name}: collectives per training step, {results['model']}, mesh data 2 x model 4")
        for col in ("collective", "as written", "as compiled", "MiB sent per device (compiled)"):
            table.add_column(col, justify="left" if col == "collective" else "right")
        written = found.get("as_written", {}).get("count", {})
        compiled = found["as_compiled"]
        table.caption = f"in all: {compiled['total_bytes'] / mib:.2f} MiB sent per device per step (ring algorithms)"
        for kind in sorted({*written, *compiled["count"]}):
            table.add_row(kind, str(written.get(kind, "-")), str(compiled["count"].get(kind, 0)),
                          f"{compiled['bytes'].get(kind, 0) / mib:.2f}")
        console.print(table)
        if "megatron" in found:
            meg = found["megatron"]
            act = found["as_written"]["activation_sized_on_model"]
            console.print(f"  activation-sized (b, s, h) collectives over model: {act}; Megatron: {meg['per_block']} per block "
                          f"x 4 blocks + the embedding's and the head's = {meg['per_step']}: "
                          + ("equal" if act == meg["per_step"] else "DIFFERENT"), highlight=False)
    return _write_bench(args, out, {"tp": results})


def _write_bench(args: argparse.Namespace, out: Path, results: dict) -> int:
    from ..bench.timing import write_json

    suffix = ("-quick" if args.quick else "") + "".join("-" + m.removesuffix("_only") for m in PARTS if getattr(args, m))
    write_json(results, out / f"bench{suffix}.json")
    console.print(f"results: {out / f'bench{suffix}.json'}")
    return 0




def add_bench_command(sub) -> None:
    bench = sub.add_parser("bench", help="time the hand-coded backward against jax.grad, PyTorch and numpy",
                           description="With no part named: the MLP grid, one epoch of Nielsen's network, the conv network's "
                                       "step and the GPT's step, in one process, interleaved rounds; tables here, JSON and "
                                       "plots in --out. PyTorch's columns need pip install '.[torch]'.")
    bench.add_argument("--quick", action="store_true", help="few configurations and rounds: a few minutes")
    bench.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds (default: 9, or 3 with --quick)")
    bench.add_argument("--gpu", action="store_true", help="the MLP grid on the GPU (JAX, and torch with CUDA)")
    bench.add_argument("--torch-compile", action="store_true", help="the MLP grid: also time torch.compile (slow to compile)")
    bench.add_argument("--data-path", default=None,
                       help="MNIST for the epoch timing: mnist.pkl.gz or a folder of its IDX files (else $FNBACKPROP_MNIST, "
                            "../shared/data, else random data of its shape); with --gpt-only, the text the start-up runs "
                            "train on (else $FNBACKPROP_TEXT, ../shared/data, else a made-up text of its size)")
    bench.add_argument("--out", default="runs/bench", help="folder for the JSON and the plots")
    bench.add_argument("--conv-only", action="store_true", help="only the conv network's step (bench-conv.json)")
    bench.add_argument("--gpt-only", action="store_true",
                       help="only the GPT's step, and the start-up of `train --model gpt`, cold and warm (bench-gpt.json)")
    bench.add_argument("--rnn-only", action="store_true",
                       help="only the step of char-rnn's LSTM, against jax.grad and PyTorch's nn.LSTM (bench-rnn.json)")
    bench.add_argument("--memory", action="store_true",
                       help="only the memory section: blockwise attention, the chunked head (bench-memory.json)")
    bench.add_argument("--tp", action="store_true",
                       help="only tensor parallelism's communication: the GPT split over 2 x 4 CPU devices, each collective "
                            "per step counted in the HLO beside Megatron's analysis and GSPMD's choice (bench-tp.json)")
    bench.set_defaults(func=run_bench)
