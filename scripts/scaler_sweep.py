"""What `scripts/scaler-frontier` and `scripts/scaler-headroom` share: running the release
`microbadger simulate` and sweeping `[control]` parameters through `--config`, exactly as a
deployment would set them. Standard library only."""
import itertools
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "microbadger")


def build():
    """Build the release binary the sweeps run (a no-op when it is up to date)."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "microbadger"],
                   cwd=ROOT, check=True)


def simulate(scenario, policy, delay, seed, config=None):
    """One `simulate --json` run, parsed."""
    args = [BIN, "simulate", "--scenario", scenario, "--policy", policy,
            "--start-delay", str(delay), "--seed", str(seed), "--json"]
    if config:
        args += ["--config", config]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def parse_args(argv, seeds, grid):
    """`[SEEDS] [NAME=V1,V2,... ...]`: the seed count and the grid (the defaults given when
    absent; a grid on the command line replaces the default one)."""
    custom = {}
    for arg in argv:
        if "=" in arg:
            name, _, values = arg.partition("=")
            custom[name] = [float(v) for v in values.split(",")]
        else:
            seeds = int(arg)
    return seeds, custom or dict(grid)


def configs(grid, directory):
    """Every combination of the grid as (label, path of a scaler config with that
    `[control]` table), one file per combination in `directory`."""
    names = list(grid)
    for k, values in enumerate(itertools.product(*grid.values())):
        path = os.path.join(directory, f"control-{k}.toml")
        with open(path, "w") as f:
            f.write("[control]\n")
            f.writelines(f"{n} = {v}\n" for n, v in zip(names, values))
        yield " ".join(f"{n}={v:g}" for n, v in zip(names, values)), path
