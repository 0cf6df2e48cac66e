"""The chapter record: numbers compared by their kind's tolerance, verdicts exactly, files atomic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entk_lib.claims import ClaimsTable
from entk_lib.record import KINDS, ChapterRecord, Tolerance, compare_records


def _table(verdict: str = "reproduced") -> ClaimsTable:
    return (ClaimsTable("t").add("a claim", "paper", "measured", verdict, source="v1 Sec. 3")
            .add("b", "p", "m", "not reproduced", source="v1 Fig. 2", kind="ours"))


def _record(**overrides) -> ChapterRecord:
    values = {"cliff": 57, "ratio": 2.0, "epoch": 100, "never": None} | overrides
    rec = ChapterRecord("99_test", {"p": 29}).add_claims(_table())
    rec.add("cliff", values["cliff"], "exact").add("ratio", values["ratio"], "ratio")
    rec.add("epoch", values["epoch"], "epoch").add("never", values["never"], "epoch")
    return rec.add("keys", [1, 12], "exact")


def test_tolerance_is_absolute_plus_relative():
    tol = Tolerance(abs=1.0, rel=0.1)
    assert tol.allows(10.0, 12.0) and tol.allows(10.0, 8.0)
    assert not tol.allows(10.0, 12.01) and not tol.allows(-10.0, -7.9)
    assert Tolerance().allows(3.0, 3.0) and not Tolerance().allows(3.0, 3.0 + 1e-9)
    assert Tolerance().text() == "exact" and "10%" in tol.text()
    assert all(kind.why for kind in KINDS.values()), "every tolerance says what it was measured from"


def test_identical_records_agree_and_lists_expand():
    a = _record().to_dict()
    assert compare_records(a, _record().to_dict()) == []
    assert {"keys[0]", "keys[1]"} <= set(a["numbers"]) and a["numbers"]["never"]["value"] is None
    assert [v["verdict"] for v in a["verdicts"]] == ["reproduced", "not reproduced"]


@pytest.mark.parametrize("change, name", [
    ({"cliff": 58}, "cliff"),                  # exact: any change
    ({"ratio": 2.0 * 1.16}, "ratio"),          # beyond 15%
    ({"epoch": 100 + 20 + 15 + 1}, "epoch"),   # beyond 20 + 15%
    ({"never": 300}, "never"),                 # "never" became an epoch
    ({"epoch": None}, "epoch"),
])
def test_a_number_beyond_its_tolerance_is_reported_by_name(change, name):
    problems = compare_records(_record().to_dict(), _record(**change).to_dict())
    assert len(problems) == 1 and problems[0].startswith(f"{name}:")


def test_numbers_within_tolerance_agree():
    assert compare_records(_record().to_dict(), _record(ratio=2.2, epoch=130).to_dict()) == []


def test_verdict_changes_and_missing_numbers_are_reported():
    a = _record().to_dict()
    b = ChapterRecord("99_test", {"p": 29}).add_claims(_table("partly reproduced")).to_dict()
    problems = compare_records(a, b)
    assert any("verdict 'reproduced' -> 'partly reproduced'" in p for p in problems)
    assert any(p.startswith("cliff: missing") for p in problems)
    assert compare_records(b, a) and any("not in the committed record" in p for p in compare_records(b, a))


def test_bad_kind_and_duplicate_names_are_errors():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        ChapterRecord("x", {}).add("a", 1.0, "rough")
    with pytest.raises(ValueError, match="added twice"):
        ChapterRecord("x", {}).add("a", 1.0, "ratio").add("a", 2.0, "ratio")


def test_check_writes_then_compares(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CLAIMS_DIR", str(tmp_path))
    monkeypatch.delenv("ENTK_RECORD_CLAIMS", raising=False)
    monkeypatch.delenv("ENTK_CLAIMS_OUT", raising=False)
    assert "no committed record" in _record().check()
    monkeypatch.setenv("ENTK_RECORD_CLAIMS", "1")
    written = _record().check()
    assert (tmp_path / "99_test.json").exists() and "agrees" in written
    monkeypatch.delenv("ENTK_RECORD_CLAIMS")
    assert _record(ratio=2.1).check() == written  # the same line nbval checks
    text = _record(cliff=56).check()
    assert "disagrees" in text and "cliff: 57 -> 56" in text
    other = ChapterRecord("99_test", {"p": 31})
    assert "parameters differ" in other.check()
    assert json.loads((tmp_path / "99_test.json").read_text())["numbers"]["cliff"]["value"] == 57


def test_save_is_atomic(tmp_path):
    rec = _record()
    rec.numbers["bad"] = {"value": object(), "kind": "exact"}  # not JSON-serializable
    with pytest.raises(TypeError):
        rec.save(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_numpy_values_and_params_are_plain():
    rec = ChapterRecord("x", {"seeds": np.array([0, 1]), "t": (1, 2)})
    rec.add("v", np.float32(0.5), "score").add("w", np.array([[1, 2]]), "exact")
    data = json.loads(json.dumps(rec.to_dict()))
    assert data["params"] == {"seeds": [0, 1], "t": [1, 2]} and data["numbers"]["w[1]"]["value"] == 2.0


def test_run_cost_reads_the_process_and_is_kept_but_not_compared():
    from entk_lib.resources import cost_text, run_cost

    cost = run_cost()
    assert 0 < cost["wall_s"] < 7 * 24 * 3600 and 0.01 < cost["peak_rss_gib"] < 1024
    assert "cores" in cost["machine"] and "GiB" in cost_text(cost)
    rec = _record()
    rec.cost = cost
    other = _record()
    other.cost = cost | {"wall_s": cost["wall_s"] * 10}
    assert rec.to_dict()["cost"] == cost and compare_records(rec.to_dict(), other.to_dict()) == []


def test_summary_page_counts_verdicts_and_lists_every_claim(tmp_path, monkeypatch):
    from entk_lib.record import summary_markdown

    rec = _record()
    rec.cost = {"wall_s": 120.0, "threads": 2, "peak_rss_gib": 1.5, "child_peak_rss_gib": 0.0,
                "machine": "test cpu, 2 cores"}
    rec.save(tmp_path / "99_test.json")
    other = ChapterRecord("98_other", {"p": 5}).add_claims(_table("partly reproduced"))
    other.save(tmp_path / "98_other.json")
    page = summary_markdown(tmp_path)
    assert page.index("98_other") < page.index("99_test")  # chapter order
    assert "| [99_test](99_test.ipynb) | 1 | 0 | 1 | 0 | 2 |" in page
    assert "| **all** | **1** | **1** | **2** | **0** | **4** |" in page
    assert "| 99_test | 2 | v1 Fig. 2 | ours | b | not reproduced |" in page
    assert "| 99_test | 2.0 min | 1.50 GiB | 0.00 GiB | 2 | ? / ? | test cpu, 2 cores |" in page
    assert "| 98_other | not measured |" in page
    from entk_lib.cache import STATS, cached

    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path / "cache"))
    before = dict(STATS)
    cached("test-stats", {"x": 1}, lambda: 1)
    cached("test-stats", {"x": 1}, lambda: 1)
    assert (STATS["misses"] - before["misses"], STATS["hits"] - before["hits"]) == (1, 1)
    with pytest.raises(FileNotFoundError, match="no chapter records"):
        summary_markdown(tmp_path / "empty")
