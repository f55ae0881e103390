"""Shared parts of the TEST STAND-INS in this folder — NOT OpenFace. Used only by tests and bench/bench_openface.py.

Both stand-ins write OpenFace 2.0.x's documented CSV layout (", " separators, AUxx_r for AUs 1 2 4 5 6 7 9 10
12 14 15 17 20 23 25 26 45, AUxx_c for those plus 28) with made-up values that mean nothing.

Switches common to both (environment variables, for failure tests):
  STANDIN_MODE=exit1      exit with code 1 and an error on stderr
  STANDIN_MODE=nocen      print OpenFace's message for a missing CE-CLM model on stdout, exit 1 (as 2.0.6 does)
  STANDIN_MODE=sleep      sleep 30 s (timeout tests)
  STANDIN_MODE=crash      die of SIGSEGV before writing anything, as a broken build does (no output, no exit code)
  STANDIN_ONLY=TEXT       apply STANDIN_MODE only when the -fdir path contains TEXT
  STANDIN_ARGS_LOG=FILE   append the received argument list (one line, tab-separated) to FILE
"""
import os
import signal
import sys
import time

AUS_R = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
AUS_C = AUS_R + (28,)
AU_HEADER = [f"AU{a:02d}_r" for a in AUS_R] + [f"AU{a:02d}_c" for a in AUS_C]


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def au_values(level: int) -> list[str]:
    """AUxx_r = (level + AU) % 6, AUxx_c = 1.0 when that is >= 3 (0.0 otherwise)."""
    r = {a: (level + a) % 6 for a in AUS_R}
    return [f"{r[a]:.2f}" for a in AUS_R] + [f"{float(r.get(a, 0) >= 3):.1f}" for a in AUS_C]


def common_mode() -> tuple[str, int | None]:
    """(mode for the caller, exit code when the run ends here). Logs the arguments first."""
    if os.environ.get("STANDIN_ARGS_LOG"):
        with open(os.environ["STANDIN_ARGS_LOG"], "a") as f:
            f.write("\t".join(sys.argv[1:]) + "\n")
    mode = os.environ.get("STANDIN_MODE", "")
    if os.environ.get("STANDIN_ONLY", "") not in (arg("-fdir") or ""):
        mode = ""
    if mode == "exit1":
        print("stand-in: simulated failure", file=sys.stderr)
        return mode, 1
    if mode == "nocen":
        print("Loading the model\nReading the landmark detector module from: model/main_ceclm_general.txt")
        print("Could not find CEN patch experts, for instructions of how to download them, see "
              "https://github.com/TadasBaltrusaitis/OpenFace/wiki/Model-download \n")
        print("ERROR: Could not load the landmark detector")
        return mode, 1
    if mode == "sleep":
        time.sleep(30)
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return mode, None
