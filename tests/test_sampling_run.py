"""The run loop with test-controlled generators and scorers: early stop on an easy prompt, more
samples on a hard one, every sample accounted for, and failures that keep what was paid for."""

import dataclasses
import zlib

import numpy as np
import pytest

import optscale
from optscale.sampling import CallableGenerator, CallableScorer, Generator, Sample, Scorer


class CountingGenerator:
    """Deterministic completions "<prompt>|<k>" with k counting per prompt; records calls."""

    def __init__(self, fail_on_call=None, fail_times=1, tokens=7):
        self.calls = []
        self.fail_on_call = fail_on_call
        self.fail_times = fail_times
        self.failed = 0
        self.tokens = tokens
        self.counter = {}

    def generate(self, prompts, n, **sampling):
        self.calls.append((list(prompts), n, sampling))
        if self.fail_on_call is not None and len(self.calls) >= self.fail_on_call \
                and self.failed < self.fail_times:
            self.failed += 1
            raise ConnectionError("backend down")
        out = []
        for p in prompts:
            k = self.counter.get(p, 0)
            self.counter[p] = k + n
            out.append([Sample(f"{p}|{k + i}", self.tokens + i) for i in range(n)])
        return out


def seeded_scores(prompt, texts):
    """Easy prompts score high and tight, hard ones spread low; deterministic per text."""
    out = []
    for t in texts:
        rng = np.random.default_rng(zlib.crc32(t.encode()))
        mu, sd = (0.97, 0.01) if prompt.startswith("easy") else (0.6, 0.15)
        out.append(float(np.clip(rng.normal(mu, sd), 0, 1)))
    return out


POLICY = optscale.OptScale0(target=0.9, confidence=0.9, n_peek=4, n_max=32)


def test_protocols_are_structural():
    assert isinstance(CountingGenerator(), Generator)
    assert isinstance(CallableScorer(seeded_scores), Scorer)


def test_easy_stops_early_hard_samples_more_and_everything_is_accounted_for():
    gen = CountingGenerator()
    results = optscale.run_batch(["easy: 1+1", "hard: prove it"], gen,
                                 CallableScorer(seeded_scores), POLICY, temperature=0.7)
    easy, hard = results
    assert easy.ok and hard.ok
    assert easy.n_used == 4  # the peek already makes the target near-certain
    assert hard.n_used > 8
    drawn = {p: 0 for p in ("easy: 1+1", "hard: prove it")}
    for prompts, n, sampling in gen.calls:
        assert sampling == {"temperature": 0.7}
        for p in prompts:
            drawn[p] += n
    for r in results:
        assert drawn[r.question] == r.n_used == len(r.scores)
        assert r.tokens == sum(s.tokens for s in r.samples)
        assert r.answer == r.samples[int(np.argmax(r.scores))].text == r.samples[r.best_index].text
        assert len({s.text for s in r.samples}) == r.n_used  # no sample drawn twice or lost


def test_batch_matches_single_runs_and_the_online_policy():
    questions = ["easy: a", "hard: b", "hard: c"]
    batch = optscale.run_batch(questions, CountingGenerator(), CallableScorer(seeded_scores),
                               POLICY)
    for q, r in zip(questions, batch, strict=True):
        single = optscale.run(q, CountingGenerator(), CallableScorer(seeded_scores), POLICY)
        assert single.scores == r.scores and single.n_star == r.n_star
        # replaying the same scores through the online policy gives the same stop
        state = POLICY.start()
        d = POLICY.update(state)
        used = 0
        while not d.stop:
            d = POLICY.update(state, r.scores[used:used + d.n_more])
            used = len(state.scores)
        assert used == r.n_used


def test_generator_failure_keeps_the_samples_already_drawn():
    gen = CountingGenerator(fail_on_call=2, fail_times=10)
    r = optscale.run("hard: x", gen, CallableScorer(seeded_scores), POLICY, retries=2, backoff=0)
    assert isinstance(r.error, ConnectionError) and not r.ok
    assert r.n_used == 4 and len(r.scores) == 4  # the peek, scored
    assert len(gen.calls) == 1 + 3  # the failing call was tried 1 + retries times (bounded)
    assert r.answer is not None


def test_retry_recovers_from_a_transient_failure():
    gen = CountingGenerator(fail_on_call=2, fail_times=1)
    r = optscale.run("hard: x", gen, CallableScorer(seeded_scores), POLICY, retries=1, backoff=0)
    assert r.ok and r.n_used > 4
    gen = CountingGenerator(fail_on_call=2, fail_times=1)
    r = optscale.run("hard: x", gen, CallableScorer(seeded_scores), POLICY, retries=0, backoff=0)
    assert isinstance(r.error, ConnectionError)


def test_scorer_failure_keeps_unscored_samples():
    calls = []

    def flaky(prompt, texts):
        calls.append(len(texts))
        if len(calls) > 1:
            raise TimeoutError("verifier timed out")
        return seeded_scores(prompt, texts)

    r = optscale.run("hard: y", CountingGenerator(), CallableScorer(flaky), POLICY, retries=1,
                     backoff=0)
    assert isinstance(r.error, TimeoutError)
    assert len(r.scores) == 4 and r.n_used > 4  # the second batch was drawn (and paid for)
    assert r.tokens == sum(s.tokens for s in r.samples)
    assert r.best_index is not None and r.best_index < 4


@pytest.mark.parametrize("bad,message", [
    (lambda p, t: [0.5] * (len(t) - 1), "scores for"),
    (lambda p, t: [float("nan")] * len(t), "non-finite"),
])
def test_bad_scorer_output_is_an_error_not_a_crash(bad, message):
    r = optscale.run("easy", CountingGenerator(), CallableScorer(bad), POLICY, retries=0)
    assert isinstance(r.error, ValueError) and message in str(r.error)
    assert r.n_used == 4 and r.scores == ()


def test_bad_generator_output():
    gen = CallableGenerator(lambda prompts, n: [[("x", -1)] * n for _ in prompts])
    r = optscale.run("q", gen, CallableScorer(seeded_scores), POLICY, retries=0)
    assert isinstance(r.error, ValueError) and "tokens: int >= 0" in str(r.error)
    assert r.n_used == 0
    wrong = CallableGenerator(lambda prompts, n: [[("x", 1)] * n])  # one list for two prompts
    for res in optscale.run_batch(["a", "b"], wrong, CallableScorer(seeded_scores), POLICY,
                                  retries=0):
        assert isinstance(res.error, ValueError) and "one per prompt" in str(res.error)
    bad_scores = CallableScorer(lambda p, t: ["high"] * len(t))
    r = optscale.run("q", CountingGenerator(), bad_scores, POLICY, retries=0)
    assert isinstance(r.error, ValueError) and r.n_used == 4 and r.scores == ()
    empty = CallableGenerator(lambda prompts, n: [[] for _ in prompts])
    r = optscale.run("q", empty, CallableScorer(seeded_scores), POLICY, retries=0)
    assert isinstance(r.error, RuntimeError) and r.n_used == 0 and r.answer is None


def test_prior_policy_and_argument_checks():
    policy = optscale.OptScaleT(target=0.9, n_peek=0, n_max=16)
    r = optscale.run("easy: z", CountingGenerator(), CallableScorer(seeded_scores), policy,
                     prior=(0.97, 0.02))
    assert r.ok and 1 <= r.n_used <= 16
    mixture = optscale.OptScaleT(target=0.9, n_peek=0, n_max=16, family="mixture")
    with pytest.raises(ValueError, match="prior"):
        optscale.run("q", CountingGenerator(), CallableScorer(seeded_scores), mixture)
    with pytest.raises(TypeError, match="optscale policy"):
        optscale.run("q", CountingGenerator(), CallableScorer(seeded_scores), object())
    with pytest.raises(ValueError, match="give a scorer"):
        optscale.run("q", CountingGenerator(), None, policy)
    with pytest.raises(ValueError, match="priors"):
        optscale.run_batch(["a", "b"], CountingGenerator(), CallableScorer(seeded_scores),
                           policy, priors=[(0.9, 0.1)])


def test_partial_results_of_a_failed_call_are_kept_and_only_the_rest_redrawn():
    class PartialError(RuntimeError):
        pass

    calls = []

    def fn(prompts, n):
        calls.append(n)
        if len(calls) == 2:  # the second round delivers 2 of its samples, then fails
            err = PartialError("server gone")
            err.partial = [[Sample(f"{p}|late{i}", 5) for i in range(2)] for p in prompts]
            raise err
        return [[Sample(f"{p}|{len(calls)}.{i}", 5) for i in range(n)] for p in prompts]

    r = optscale.run("hard: z", CallableGenerator(fn), CallableScorer(seeded_scores), POLICY,
                     retries=3, backoff=0)
    assert r.ok and calls[2] == calls[1] - 2  # the retry asked only for the missing samples
    texts = [s.text for s in r.samples]
    assert texts[4:6] == ["hard: z|late0", "hard: z|late1"] and len(set(texts)) == len(texts)
    assert r.n_used == sum(calls) - (calls[1] - 2) == len(r.scores)
    calls.clear()
    r = optscale.run("hard: z", CallableGenerator(fn), CallableScorer(seeded_scores), POLICY,
                     retries=0, backoff=0)
    assert isinstance(r.error, PartialError) and len(calls) == 2  # no retries: kept, stopped
    assert r.n_used == 6 and len(r.scores) == 6 and r.tokens == 30


class Malformed:
    """Every call returns its ``n`` samples per prompt, but sample ``j`` is malformed when ``j``
    is in ``bad`` (a non-string text, a negative or missing token count, a bare string), on the
    first ``times`` calls; counts every well-formed sample it produced."""

    KINDS = [(42, 3), ("text", -1), "bare", ("text", 2.5), ("a", 1, 2), None]

    def __init__(self, bad=(1, 3), times=2):
        self.bad, self.times = bad, times
        self.calls, self.produced = [], []

    def generate(self, prompts, n, **sampling):
        self.calls.append((list(prompts), n))
        out = []
        for p in prompts:
            row = []
            for j in range(n):
                if len(self.calls) <= self.times and j in self.bad:
                    row.append(self.KINDS[(len(self.calls) + j) % len(self.KINDS)])
                else:
                    s = Sample(f"{p}|{len(self.calls)}.{j}", 3)
                    self.produced.append(s)
                    row.append(s)
            out.append(row)
        return out


def test_malformed_samples_keep_the_well_formed_ones_and_only_the_rest_is_asked_for():
    gen = Malformed()
    results = optscale.run_batch(["hard: a", "hard: b"], gen, CallableScorer(seeded_scores),
                                 POLICY, retries=2, backoff=0)
    assert all(r.ok for r in results)
    kept = [s for r in results for s in r.samples]
    assert sorted(kept) == sorted(gen.produced)  # every well-formed sample paid for is kept
    # the first call's 2 bad samples per prompt are asked for again, and only they
    assert gen.calls[0][1] == 4 and gen.calls[1] == (["hard: a", "hard: b"], 2)
    for r in results:
        assert len(r.scores) == r.n_used and r.n_used <= POLICY.n_max


def test_malformed_samples_after_the_last_retry_end_the_question_with_what_it_has():
    gen = Malformed(bad=(0, 1, 2), times=10)
    r = optscale.run("hard: c", gen, CallableScorer(seeded_scores), POLICY, retries=1, backoff=0)
    assert isinstance(r.error, ValueError) and "expected (text: str" in str(r.error)
    assert [s.text for s in r.samples] == [s.text for s in gen.produced]  # none lost
    assert len(r.scores) == r.n_used == 1 and [n for _, n in gen.calls] == [4, 3]


def test_more_samples_than_asked_are_cut_to_n():
    gen = CallableGenerator(lambda prompts, n: [[(f"x{i}", 1) for i in range(n + 3)]
                                                for _ in prompts])
    r = optscale.run("q", gen, CallableScorer(seeded_scores),
                     optscale.OptScale0(target=0.9, n_peek=4, n_max=4), retries=0)
    assert r.ok and r.n_used == 4


class Stopping:
    """Delivers normally, then raises ``exc`` on call ``at`` (with ``partial`` attached)."""

    def __init__(self, exc, at=2, partial=1):
        self.exc, self.at, self.partial_n = exc, at, partial
        self.calls = 0

    def generate(self, prompts, n, **sampling):
        self.calls += 1
        if self.calls == self.at:
            self.exc.partial = [[Sample(f"{p}|cut{i}", 2) for i in range(self.partial_n)]
                                for p in prompts]
            raise self.exc
        return [[Sample(f"{p}|{self.calls}.{i}", 2) for i in range(n)] for p in prompts]


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_an_interrupt_hands_back_every_sample_drawn(exc):
    gen = Stopping(exc)
    questions = ["hard: a", "easy: b", "hard: c"]
    with pytest.raises(type(exc)) as info:
        optscale.run_batch(questions, gen, CallableScorer(seeded_scores), POLICY, retries=0)
    partial = info.value.partial_results
    assert [r.question for r in partial] == questions
    easy = partial[1]
    assert easy.ok and easy.n_used == 4  # finished before the interrupt: a normal result
    for r in (partial[0], partial[2]):
        assert r.error is info.value and not r.ok
        texts = [s.text for s in r.samples]
        assert texts[-1] == f"{r.question}|cut0"  # delivered with the interrupt: kept
        assert len(r.scores) == r.n_used - 1  # ... but not scored
    # run(): the single result as well
    with pytest.raises(type(exc)) as info:
        optscale.run("hard: z", Stopping(exc, at=2), CallableScorer(seeded_scores), POLICY)
    assert info.value.partial_result.n_used == 5 and info.value.partial_results[0].n_used == 5


def test_an_interrupt_in_the_scorer_keeps_the_unscored_samples():
    calls = []

    def scorer(prompt, texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return seeded_scores(prompt, texts)

    with pytest.raises(KeyboardInterrupt) as info:
        optscale.run("hard: y", CountingGenerator(), CallableScorer(scorer), POLICY)
    r = info.value.partial_result
    assert len(r.scores) == 4 and r.n_used == 4 + calls[1] and r.best_index is not None


class FailingPolicy(optscale.OptScale0):
    """Raises on its second update with scores (after the peek and one more round)."""

    def update(self, state, scores=None, answers=None, tokens=None):
        if scores is not None and len(state.scores) >= 4:
            raise ValueError("policy broke")
        return super().update(state, scores, answers, tokens)


def test_a_policy_error_ends_its_question_with_everything_kept():
    policy = FailingPolicy(target=0.9, confidence=0.9, n_peek=4, n_max=32)
    results = optscale.run_batch(["hard: a", "easy: b"], CountingGenerator(),
                                 CallableScorer(seeded_scores), policy)
    hard, easy = results
    assert isinstance(hard.error, ValueError) and "policy broke" in str(hard.error)
    assert hard.n_used > 4 and len(hard.scores) == hard.n_used  # scored, then the policy failed
    assert easy.ok


def test_backoff_is_capped(monkeypatch):
    from optscale.sampling import _run

    slept = []
    monkeypatch.setattr(_run.time, "sleep", slept.append)
    gen = CountingGenerator(fail_on_call=1, fail_times=100)
    r = optscale.run("q", gen, CallableScorer(seeded_scores), POLICY, retries=9, backoff=1.0)
    assert isinstance(r.error, ConnectionError) and len(gen.calls) == 10
    assert slept == [1, 2, 4, 8, 16, 30, 30, 30, 30]
    slept.clear()
    optscale.run("q", CountingGenerator(fail_on_call=1, fail_times=100),
                 CallableScorer(seeded_scores), POLICY, retries=3, backoff=45.0)
    assert slept == [45, 45, 45]  # a first wait longer than the cap is kept, never grown
    assert _run._delay(0.5, 10**6) == _run.MAX_BACKOFF  # no overflow on huge attempt numbers


@pytest.mark.parametrize("kwargs,error,name", [
    ({"retries": -1}, ValueError, "retries"), ({"retries": 1.5}, TypeError, "retries"),
    ({"retries": True}, TypeError, "retries"), ({"backoff": float("nan")}, ValueError, "backoff"),
    ({"backoff": -1}, ValueError, "backoff"), ({"backoff": "1"}, TypeError, "backoff"),
    ({"backoff": 1e12}, ValueError, "backoff"),
])
def test_run_arguments_are_checked_up_front(kwargs, error, name):
    gen = CountingGenerator()
    with pytest.raises(error, match=name):
        optscale.run("q", gen, CallableScorer(seeded_scores), POLICY, **kwargs)
    assert gen.calls == []
    with pytest.raises(TypeError, match="one string"):
        optscale.run_batch("abc", gen, CallableScorer(seeded_scores), POLICY)
    with pytest.raises(TypeError, match=r"questions\[1\]"):
        optscale.run_batch(["a", 2], gen, CallableScorer(seeded_scores), POLICY)


def test_prior_policy_takes_priors_from_its_predictor_in_one_batch():
    class Predictor:
        calls: list = []

        def predict_moments(self, texts):
            self.calls.append(list(texts))
            easy = np.array([t.startswith("easy") for t in texts])
            return np.where(easy, 0.97, 0.5), np.where(easy, 0.02, 0.2)

    predictor = Predictor()
    policy = optscale.OptScaleT(target=0.9, n_peek=0, n_max=16, predictor=predictor)
    questions = ["easy: a", "hard: b", "easy: c"]
    results = optscale.run_batch(questions, CountingGenerator(), CallableScorer(seeded_scores),
                                 policy)
    assert predictor.calls == [questions]  # one batched prediction
    mu, sigma = policy.prior_for(questions)
    ref, _, _ = optscale.truncnorm_from_moments(np.array([0.97, 0.5, 0.97]),
                                                np.array([0.02, 0.2, 0.02]))
    np.testing.assert_allclose(mu, ref)
    given = optscale.run_batch(questions, CountingGenerator(), CallableScorer(seeded_scores),
                               policy, priors=list(zip(mu, sigma, strict=True)))
    assert [r.n_used for r in results] == [r.n_used for r in given]
    state = policy.start(question="easy: a")
    assert state.prior == pytest.approx((mu[0], sigma[0]), rel=1e-5)
    beta = dataclasses.replace(policy, family="beta")
    a, b = beta.prior_for(questions[:1])
    np.testing.assert_allclose([a[0] / (a[0] + b[0])], [0.97])


def test_any_policy_with_answers_and_no_scorer():
    """A vote-based policy needs no verifier: the run loop extracts answers, the policy stops
    on agreement, and the answer is the vote's pick."""
    texts = iter(["the answer is 3", "the answer is 4", "the answer is 4", "the answer is 4"]
                 * 10)
    gen = CallableGenerator(lambda prompts, n: [[(next(texts), 5) for _ in range(n)]
                                                for _ in prompts])
    esc = optscale.ESC(window=2, n_max=12)
    r = optscale.run("q", gen, None, esc, answer=lambda t: t.split()[-1])
    assert r.ok and r.n_used == 4 and r.answers == ("3", "4", "4", "4")
    assert r.chosen == 1 and r.answer == "the answer is 4" and all(np.isnan(r.scores))
    # a weighted vote with a scorer: the chosen sample is the weighted leader, not the best
    gen = CallableGenerator(lambda prompts, n: [[(t, 5) for t in ("a", "b", "b")][:n]
                                                for _ in prompts])
    scores = {"a": 0.9, "b": 0.5}
    policy = optscale.FixedN(3, optscale.Selection("weighted"))
    r = optscale.run("q", gen, CallableScorer(lambda p, ts: [scores[t] for t in ts]), policy,
                     answer=str)
    assert r.best_index == 0 and r.chosen == 1 and r.answer == "b"
