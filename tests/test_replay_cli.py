"""``optscale demo`` and ``optscale replay`` end to end (small sizes)."""

import csv

import numpy as np
import pytest

from optscale.cli import main
from optscale.replay import Pool, save_npz
from tests._data import labelled_pool


def test_demo_writes_a_labelled_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--questions", "40", "--samples", "16", "--orders", "2",
                 "--budgets", "4,16", "--methods", "bon,sc,esc,optscale0", "--out", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "SIMULATED" in text and "OptScale^0" in text and "ESC" in text
    with open(out / "selected.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows} == {"BoN", "SC", "ESC", "OptScale^0"}
    assert all(r["simulated"] == "True" for r in rows)
    assert (out / "report.md").read_text().count("SIMULATED") == 1


def test_replay_npz(tmp_path, capsys):
    path = tmp_path / "pool.npz"
    save_npz(labelled_pool(), str(path))
    assert main(["replay", str(path), "--orders", "2", "--folds", "3", "--budgets", "4,12",
                 "--methods", "asc,dsc", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "SIMULATED" not in text and "ASC" in text and "DSC" in text and "BoN" in text


def test_replay_errors(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "samples": [{"score": 0.5}]}\n{"id": "b", "samples": 3}\n')
    assert main(["replay", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["replay", str(bad), "--methods", "nope"]) == 2
    assert "--methods takes a comma-separated list" in capsys.readouterr().err


def test_diagnose_prefers_the_mixture_on_bimodal_scores(tmp_path, capsys, numpy_backend):
    rng = np.random.default_rng(1)
    size, width = 3, 200
    correct = rng.random((size, width)) < 0.4
    scores = np.clip(np.where(correct, rng.normal(0.97, 0.01, (size, width)),
                              rng.normal(0.05, 0.03, (size, width))), 0, 1)
    path = tmp_path / "bimodal.npz"
    save_npz(Pool(scores, np.full(size, width), np.where(correct, 0, 1), correct), str(path))
    assert main(["diagnose", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Chosen by BIC: truncnorm 0, beta 0, mixture 3" in text
    assert "Rejected by KS at 0.05: truncnorm 100 %" in text
    assert main(["diagnose", str(tmp_path / "missing.npz")]) == 2


def test_diagnose_leaves_unscored_samples_out(tmp_path, capsys, numpy_backend):
    lines = ['{"id": "a", "samples": [{"score": 0.5}, {"score": 0.7}, {"score": 0.6}]}',
             '{"id": "b", "samples": [{"score": 0.2}, {"score": null}, {"score": 0.4}, '
             '{"score": 0.3}]}',
             '{"id": "c", "samples": [{"score": null}]}']
    with_null = tmp_path / "null.jsonl"
    with_null.write_text("\n".join(lines) + "\n")
    clean = tmp_path / "clean.jsonl"
    clean.write_text(lines[0] + "\n" + lines[1].replace('{"score": null}, ', "") + "\n")
    assert main(["diagnose", str(with_null)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "- question b: 1 of its 4 samples are unscored (null) and left out" in out
    assert "| c | 0 | n/a |" in out
    table = [row for row in out.splitlines() if row.startswith(("| a ", "| b "))]
    assert main(["diagnose", str(clean)]) == 0
    assert table == [row for row in capsys.readouterr().out.splitlines()
                     if row.startswith(("| a ", "| b "))]
    only_null = tmp_path / "only_null.jsonl"
    only_null.write_text(lines[2] + "\n")
    assert main(["diagnose", str(only_null)]) == 2
    assert "has a scored sample" in capsys.readouterr().err


def test_replay_runs_the_other_families(tmp_path, capsys):
    path = tmp_path / "pool.npz"
    save_npz(labelled_pool(size=20), str(path))
    assert main(["replay", str(path), "--orders", "2", "--folds", "2", "--budgets", "8",
                 "--methods", "optscale0-beta,optscale0-exceedance", "--out",
                 str(tmp_path / "r"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "OptScale^0 beta" in text and "OptScale^0 exceedance" in text


def test_tune_writes_a_policy_that_replay_and_load_read(tmp_path, capsys, numpy_backend):
    import json

    import optscale

    path = tmp_path / "pool.npz"
    save_npz(labelled_pool(40, 16, seed=3), str(path))
    policy_path = tmp_path / "policy.json"
    assert main(["tune", str(path), "-o", str(policy_path), "--token-budget", "3000",
                 "--orders", "2", "--folds", "3", "--budgets", "4,8,16",
                 "--methods", "bon,wsc,esc,leader,cost", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Held out" in out and "Policy:" in out
    data = json.loads(policy_path.read_text())
    assert data["format"] == "optscale-policy" and data["version"] == 1
    assert len(data["provenance"]["pool_sha256"]) == 64
    held = data["metrics"]["heldout"]
    assert held["tokens"] <= 3000 * 1.5 and 0 <= held["accuracy"] <= 1
    assert len(held["chosen_per_fold"]) == 3
    policy = optscale.load_policy(str(policy_path))
    assert policy.n_max <= 16
    assert main(["replay", str(path), "--policy", str(policy_path), "--orders", "2",
                 "--folds", "2", "--out", str(tmp_path / "r"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "policy file policy.json" in out and "The policy file reports" in out


def test_tune_objectives_choose_as_documented():
    from optscale.replay._tune import Objective

    acc = np.array([0.30, 0.40, 0.42, 0.41])
    cost = np.array([100.0, 200.0, 400.0, 300.0])
    assert Objective("accuracy", 0.41).choose(acc, cost) == 3  # cheapest reaching 0.41
    assert Objective("accuracy", 0.5).choose(acc, cost) == 2  # none does: most accurate
    assert Objective("budget", 350).choose(acc, cost) == 3
    assert Objective("budget", 50).choose(acc, cost) == 0  # none fits: cheapest
    assert Objective("price", 1e-4).choose(acc, cost) == 1  # three tie at 0.38: the cheapest
    assert Objective("price", 0.0).choose(acc, cost) == 2
    # per-question accuracies: setting 1 is the best on average, but setting 2 (dearer, still
    # within budget) is within one standard error of it: the tie goes to spending the budget;
    # setting 0 is clearly worse
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, 200)
    noise = rng.normal(0, 0.1, 200)
    per_q = np.stack([base - 0.2, base, base - 0.005 + noise - noise.mean()])
    assert Objective("budget", 500).choose(per_q, np.array([100.0, 200.0, 400.0])) == 2
    assert Objective("budget", 300).choose(per_q, np.array([100.0, 200.0, 400.0])) == 1
    with pytest.raises(ValueError, match="objective"):
        Objective("speed", 1.0)
    with pytest.raises(ValueError, match="accuracy in"):
        Objective("accuracy", 1.5)


def test_tune_says_when_no_setting_meets_the_objective(tmp_path, capsys, numpy_backend):
    import json

    from optscale.replay._tune import Objective

    acc, cost = np.array([0.30, 0.40]), np.array([100.0, 200.0])
    assert Objective("budget", 100).met(acc, cost) and not Objective("budget", 99).met(acc, cost)
    assert Objective("accuracy", 0.4).met(acc, cost)
    assert not Objective("accuracy", 0.41).met(acc, cost)
    assert Objective("price", 1.0).met(acc, cost)
    path = tmp_path / "pool.npz"
    pool = labelled_pool(20, 8, seed=3)
    wrong = np.arange(20)[:, None] % 2 == 0  # half the questions have no correct sample
    save_npz(Pool(pool.scores, pool.lengths, np.where(wrong, 1, pool.answers),
                  pool.correct & ~wrong, pool.tokens), str(path))
    out = tmp_path / "policy.json"
    common = [str(path), "-o", str(out), "--orders", "1", "--folds", "2", "--budgets", "2,4",
              "--methods", "bon", "-q"]
    for objective, line in ((["--token-budget", "0"], "no setting meets --token-budget 0 "
                             "(cheapest: "), (["--target-accuracy", "1"], "no setting reaches "
                                              "--target-accuracy 1 (best: ")):
        assert main(["tune", *common, *objective]) == 0  # the documented fallback
        err = capsys.readouterr().err
        metrics = json.loads(out.read_text())["metrics"]
        assert f"optscale tune: {line}" in err and "wrote the " in err
        assert metrics["in_sample"]["objective_met"] is False
        assert metrics["heldout"]["objective_met_per_fold"] == [False, False]
    assert main(["tune", *common, "--token-budget", "1e9"]) == 0
    assert "no setting" not in capsys.readouterr().err
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["in_sample"]["objective_met"] is True
    assert metrics["heldout"]["objective_met_per_fold"] == [True, True]


def test_questions_selection(tmp_path, capsys):
    path = tmp_path / "pool.npz"
    save_npz(labelled_pool(20, 8), str(path))
    assert main(["replay", str(path), "--questions", "even", "--orders", "1", "--folds", "2",
                 "--methods", "bon", "--budgets", "4", "--out", str(tmp_path / "r"), "-q"]) == 0
    assert "10 questions" in capsys.readouterr().out


def test_small_budgets_build_only_the_methods_asked_for(tmp_path, capsys):
    path = tmp_path / "pool.npz"
    save_npz(labelled_pool(12, 6), str(path))
    assert main(["replay", str(path), "--methods", "bon,sc", "--budgets", "2", "--orders", "1",
                 "--folds", "2", "--out", str(tmp_path / "r"), "-q"]) == 0
    capsys.readouterr()
    assert main(["replay", str(path), "--methods", "hybrid", "--budgets", "1", "--orders", "1",
                 "--folds", "2", "--out", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no valid setting" in err[0]
