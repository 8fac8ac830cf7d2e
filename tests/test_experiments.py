"""Every program in experiments/ runs in its --quick mode and writes its results file: none can rot
unnoticed. The committed results of the long runs are well-formed and quoted by the book."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py"))
# the runs of each program that the chapters quote: program -> results files it writes
QUOTED = {"psiren_batch_norm": ["psiren_batch_norm"], "sense_loss_temperature": ["sense_loss_temperature"],
          "car_expert_rules": ["car_expert_rules"],
          "sense_random80": ["sense_random80_mnist_cross_entropy", "sense_random80_car_cross_entropy",
                             "sense_random80_mnist_cross_entropy_train",
                             "sense_random80_mnist_cross_entropy_swaps8_train"]}
ARGS = {"sense_random80": [["mnist"], ["car", "--fitness", "accuracy"],
                           ["mnist", "--fit-on", "train", "--swaps-per-step", "3", "--schedule", "adaptive"]]}


def test_every_program_is_known():
    assert set(PROGRAMS) == set(QUOTED)


@pytest.mark.parametrize("program,args", [(p, a) for p in PROGRAMS for a in ARGS.get(p, [[]])])
def test_program_runs_quick(program, args, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / f"{program}.py"), *args, "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    (out,) = tmp_path.glob("*.json")
    payload = json.loads(out.read_text())
    assert payload["quick"] is True and payload["command"].startswith(f"python experiments/{program}.py")
    assert "--out" not in payload["command"] and str(tmp_path) not in payload["command"]  # no machine folder
    assert payload["metrics"] and all(isinstance(v, float) for v in payload["metrics"].values())


@pytest.mark.parametrize("name", [n for names in QUOTED.values() for n in names])
def test_committed_results_are_complete(name):
    path = ROOT / "results" / "experiments" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path.name} has not been committed yet")
    payload = json.loads(path.read_text())
    assert {"name", "command", "device", "versions", "date", "quick", "metrics"} <= payload.keys()
    assert payload["name"] == name and payload["quick"] is False
    quoted = [p for p in (ROOT / "book").glob("*.md") if f'"{name}"' in p.read_text()]
    assert quoted, f"no chapter reads {name}"
