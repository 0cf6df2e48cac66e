"""Parameter validation, the cache, the training loop, the claims table, style."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

from entk_lib import cache, params
from entk_lib.claims import ClaimsTable, fmt, fmt_spread, verdict
from entk_lib.training import accuracy, train

ROOT = Path(__file__).resolve().parents[1]


def test_check_int_and_real_name_the_parameter_and_range():
    assert params.check_int("width", 512) == 512
    with pytest.raises(ValueError, match=r"`width` must be an integer >= 1, got 0"):
        params.check_int("width", 0)
    with pytest.raises(ValueError, match=r"`width` must be an integer >= 1, got 2.5"):
        params.check_int("width", 2.5)
    with pytest.raises(ValueError, match=r"`width`"):
        params.check_int("width", True)
    with pytest.raises(ValueError, match=r"`train_fraction` must be a number in \(0, 1\), got 1.0"):
        params.check_real("train_fraction", 1.0, low=0, high=1, low_inclusive=False, high_inclusive=False)
    with pytest.raises(ValueError, match="finite"):
        params.check_real("lr", float("nan"))
    with pytest.raises(ValueError, match=r"`seeds\[1\]`"):
        params.check_int_list("seeds", [0, -1])
    with pytest.raises(ValueError, match=r"`p` must be an odd prime"):
        params.check_prime("p", 27)
    assert params.check_prime("p", 29) == 29
    assert [n for n in range(30) if params.is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_cache_roundtrip_and_atomic_write(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    calls = []
    value = cache.cached("unit", {"a": 1, "b": [2, 3]}, lambda: calls.append(1) or {"x": torch.ones(2)})
    again = cache.cached("unit", {"b": [2, 3], "a": 1}, lambda: calls.append(1) or None)
    assert len(calls) == 1 and torch.equal(again["x"], value["x"])
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(list((tmp_path / "unit").glob("*.json"))) == 1

    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached("unit", {"a": 2}, boom)
    assert len(list((tmp_path / "unit").glob("*.pt"))) == 1  # nothing half-written


def test_corrupt_cache_entry_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    key = cache.params_hash({"a": 1})
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / f"{key}.pt").write_bytes(b"garbage")
    assert cache.cached("unit", {"a": 1}, lambda: 42) == 42
    assert cache.cached("unit", {"a": 1}, lambda: 0) == 42


def test_train_records_history_and_checkpoints():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(20, 3), torch.randn(20, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = train(model, torch.nn.functional.mse_loss, (x, y), optimizer=opt, epochs=6,
                test_data=(x[:5], y[:5]), batch_size=8, eval_every=3, checkpoint_epochs=[0, 3],
                progress=False)
    assert run.history["epoch"] == [0, 3, 6]
    assert run.history["train_loss"][-1] < run.history["train_loss"][0]
    assert set(run.checkpoints) == {0, 3}
    at0 = run.model_at(model, 0)
    assert not torch.equal(at0.weight, model.weight)
    with pytest.raises(ValueError, match="`epoch` 5 has no checkpoint"):
        run.model_at(model, 5)
    with pytest.raises(ValueError, match="`checkpoint_epochs` must be an integer in \\[0, 6\\]"):
        train(model, torch.nn.functional.mse_loss, (x, y), optimizer=opt, epochs=6,
              checkpoint_epochs=[7], progress=False)
    assert accuracy(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])) == 0.5


def test_claims_table_renders_stably():
    t = ClaimsTable("Demo")
    t.add("cliff at 50", "50", fmt(50), verdict(True), source="v1 Sec. 3", baseline="none")
    t.add("overlap", "26.47 / 28", fmt_spread([26.1, 26.3, 26.5]), verdict(False, partial=True),
          source="v4 Table 1", kind="ours", details="seed 0: 26.1")
    md = t._repr_markdown_()
    assert "| 1 | cliff at 50 | v1 Sec. 3 | paper | 50 | 50 | none | reproduced |" in md
    assert ("| 2 | overlap | v4 Table 1 | ours | 26.47 / 28 | 26.30 ± 0.16 (n=3) | — "
            "| partly reproduced |") in md
    assert "<details>" in md and "**2.** seed 0: 26.1" in md
    assert "26.30 ± 0.16 (n=3)" in repr(t) and "| verdict: partly reproduced" in repr(t)
    assert t.verdict_counts()["partly reproduced"] == 1
    assert fmt(-0.0001) == "0.00" and verdict(None) == "inconclusive"
    with pytest.raises(ValueError, match="`verdict_text`"):
        t.add("x", "y", "z", "maybe", source="v1")
    with pytest.raises(ValueError, match="`kind`"):
        t.add("x", "y", "z", "reproduced", source="v1", kind="mine")
    with pytest.raises(ValueError, match="`source`"):
        t.add("x", "y", "z", "reproduced", source=" ")


def test_ntk_review_pipeline_small_and_validated():
    import matplotlib.pyplot as plt

    from entk_lib.experiments import ntk_review as review

    p = review.ReviewParams(widths=[8, 32], n_train=16, n_test=16, steps=20, seeds=[0], ranks=[1, 4, 16])
    results = review.width_sweep(p, progress=False)
    summary = review.summarize(results, p)
    assert summary["drift"].shape == (2,) and summary["truncation_r2"].shape == (2, 3)
    table = review.claims_table(summary, p)
    assert len(table.rows) == 5
    figures = [review.plot_drift(summary), review.plot_faithfulness(summary),
               review.plot_predictions(results, p), review.plot_spectra(results, summary, p)]
    assert [len(f.axes) for f in figures] == [1, 3, 5, 2]   # plot_predictions: 4 panels + colour bar
    plt.close("all")
    with pytest.raises(ValueError, match="`activation` must be one of"):
        review.ReviewParams(activation="sigmoid")


def test_ntk_review_ranks_are_derived_from_n_train():
    from entk_lib.experiments import ntk_review as review

    p = review.ReviewParams()
    assert p.ranks == [1, 2, 3, 5, 10, 20, 50, 128] and p.derived_fields == ("ranks",)  # today's default
    assert review.ReviewParams(n_train=16).ranks == [1, 2, 3, 5, 16]
    assert review.ReviewParams(n_train=1000).ranks == [1, 2, 3, 5, 10, 20, 50, 100, 200, 1000]
    for n in range(4, 300):
        ranks = review.derived_ranks(n)
        assert ranks == sorted(set(ranks)) and ranks[0] == 1 and ranks[-1] == n
    # an explicit misfit names both parameters
    with pytest.raises(ValueError, match=r"`ranks\[0\]` must be an integer in \[1, 16\].*`n_train`=16"):
        review.ReviewParams(n_train=16, ranks=[32])


def test_ntk_review_record_of_the_small_pipeline():
    import copy

    from conftest import check_record_well_formed
    from entk_lib.experiments import ntk_review as review
    from entk_lib.record import compare_records

    p = review.ReviewParams(widths=[8, 32], n_train=16, n_test=16, steps=20, seeds=[0], ranks=[1, 4, 16])
    summary = review.summarize(review.width_sweep(p, progress=False), p)
    table = review.claims_table(summary, p)
    r = review.record(summary, p, table).to_dict()
    check_record_well_formed(r, table, "01_ntk_review")
    assert {"drift[w=8]", "drift_slope", "acc_gap_kt[w=32]", "smallest_rank[w=32]",
            "truncation_r2[w=8,rank<=1]"} <= set(r["numbers"])
    moved = copy.deepcopy(r)
    moved["numbers"]["r2_k0[w=32]"]["value"] += 0.04  # within the score tolerance (0.05)
    assert compare_records(r, moved) == []
    moved["numbers"]["r2_k0[w=32]"]["value"] += 0.02
    problems = compare_records(r, moved)
    assert len(problems) == 1 and problems[0].startswith("r2_k0[w=32]:")


def test_ruff_clean():
    exe = Path(sys.executable).parent / "ruff"
    if not exe.exists() and shutil.which("ruff") is None:
        pytest.skip("ruff is not installed")
    out = subprocess.run([str(exe) if exe.exists() else "ruff", "check", "."], cwd=ROOT,
                         capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stdout + out.stderr


def test_list_parameters_accept_yaml_strings():
    """``papermill -p seeds "[0, 1]"`` passes a string; it is parsed, and bad strings say why."""
    assert params.check_int_list("seeds", "[0, 1, 2]") == [0, 1, 2]
    assert params.check_real_list("betas", "[1.0, 0.3]", low=0.0) == [1.0, 0.3]
    with pytest.raises(ValueError, match=r"`seeds` must be a list of integers, got 'zero'"):
        params.check_int_list("seeds", "zero")
    with pytest.raises(ValueError, match=r"`betas\[1\]` must be a number in \[0, inf\]"):
        params.check_real_list("betas", [1.0, -2.0], low=0.0)


def test_environment_yml_covers_the_package_dependencies():
    """environment.yml (conda/Binder) installs every core dependency of pyproject.toml, a CPU
    PyTorch, and the package itself with extras that exist."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    names = {re.split(r"[<>=! ]", d, maxsplit=1)[0].lower() for d in conda}
    wanted = {re.split(r"[<>=! \[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    wanted = {"pytorch" if n == "torch" else n for n in wanted}
    assert wanted <= names, f"environment.yml lacks {sorted(wanted - names)}"
    assert any(d.startswith("pytorch") and "cpu" in d for d in conda), "ask conda for a CPU PyTorch"
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    (editable,) = [line for line in pip if line.startswith("-e .")]
    extras = set(re.search(r"\[(.*)\]", editable).group(1).split(","))
    assert extras <= set(project["optional-dependencies"]), extras
