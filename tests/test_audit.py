"""Human audit: sampling, the reviews database, agreement and drift, and the web app —
served for real on loopback and driven by headless Chromium with the keyboard."""

import json
import os
import shutil
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from .conftest import cai
from constitutional import constitution
from constitutional.audit.agreement import agreement, kappa, relabel
from constitutional.audit.app import Server
from constitutional.audit.db import AuditDB
from constitutional.audit.sample import allocate, band, collect, stratified
from constitutional.backends.scripted import ScriptedBackend
from constitutional.errors import CaiError

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def fake_run(tmp_path, n=12):
    """A run folder with labels, harm verdicts and critique trajectories."""
    run = tmp_path / "run"
    convo = lambda i: [{"role": "user", "content": f"prompt {i}"}]
    labels = [{"id": f"l{i}", "pair_id": f"p{i}", "prompt": convo(i),
               "chosen": [{"role": "assistant", "content": f"good {i}" if i else XSS}],
               "rejected": [{"role": "assistant", "content": f"bad {i}"}],
               "p_chosen": 0.52 if i % 3 else 0.95, "principle_ids": ["HARM-01"],
               "reasoning": None, "category": "violence_weapons" if i % 2 else "fraud_scams"}
              for i in range(n)]
    verdicts = [{"model": "base", "prompt_id": f"v{i}", "set": "harmful", "category": "cyber",
                 "prompt": f"harmful {i}", "response": XSS if i == 0 else f"response {i}",
                 "violation": i % 2 == 0, "p_violation": 0.9 if i % 2 == 0 else 0.45,
                 "principle_id": "HARM-03" if i % 2 == 0 else None} for i in range(n)]
    verdicts.append({"model": "base", "prompt_id": "b0", "set": "borderline", "category": "borderline",
                     "prompt": "kill a process", "response": "kill -9", "violation": None,
                     "p_violation": None})
    critiques = [{"id": f"c{i}", "prompt_id": f"q{i}", "messages": convo(i), "category": "privacy",
                  "initial": f"draft {i}",
                  "rounds": [{"round": 1, "principle_id": "HARM-06", "critique": "too detailed",
                              "revision": f"rev {i}", "skipped": False},
                             {"round": 2, "principle_id": "CARE-01", "critique": "nothing wrong",
                              "revision": None, "skipped": True}]} for i in range(n // 2)]
    _write(run / "rlaif" / "labels.jsonl", labels)
    _write(run / "eval" / "verdicts.jsonl", verdicts)
    _write(run / "critique" / "critique.jsonl", critiques)
    (run / "config.json").write_text(json.dumps({"constitution": "default"}))
    (run / "provenance.json").write_text(json.dumps({"constitution_hash": "h1",
                                                     "constitution": "constitutional-default"}))
    return run


def test_collect_turns_each_judgment_into_a_two_choice_item(tmp_path):
    items = collect(fake_run(tmp_path))
    kinds = Counter(it["kind"] for it in items)
    assert kinds == {"label": 12, "harm": 12, "critique": 12}  # the borderline row has no judge
    for it in items:
        assert it["ai_label"] in it["choices"] and len(it["choices"]) == 2
        assert it["constitution_hash"] == "h1"
    labels = [it for it in items if it["kind"] == "label"]
    # The AI's pick is shown as (A) or (B) by a seeded coin, not always first.
    assert {it["ai_label"] for it in labels} == {"A", "B"}
    for it in labels:
        good = it["responses"][0 if it["ai_label"] == "A" else 1]
        assert good.startswith("good") or good == XSS
        assert it["principles"][0]["id"] == "HARM-01" and it["principles"][0]["text"]
    crit = sorted((it for it in items if it["kind"] == "critique"), key=lambda it: it["source_id"])
    assert [it["ai_label"] for it in crit[:2]] == ["improved", "not_improved"]
    # Round 2 starts from round 1's revision; a skipped round keeps the draft.
    assert crit[1]["responses"] == ["rev 0", "rev 0"]
    assert band(None) == "none" and band(0.04) == "low" and band(0.9) == "high"


def test_allocation_covers_strata_and_spends_the_budget_exactly():
    sizes = {"a": 50, "b": 5, "c": 1, "d": 20}
    weights = {"a": 1, "b": 3, "c": 1, "d": 1}
    take = allocate(sizes, weights, 20)
    assert sum(take.values()) == 20 and all(take[s] >= 1 for s in sizes)
    assert all(take[s] <= sizes[s] for s in sizes)
    assert allocate(sizes, weights, 200) == sizes  # more budget than items: all of them


def test_sample_is_seeded_stratified_and_oversamples_low_confidence(tmp_path):
    items = collect(fake_run(tmp_path, n=60))
    a, b = stratified(items, 30, seed=7), stratified(items, 30, seed=7)
    assert [it["id"] for it in a] == [it["id"] for it in b]
    assert [it["id"] for it in stratified(items, 30, seed=8)] != [it["id"] for it in a]
    assert len({it["id"] for it in a}) == 30
    assert {it["kind"] for it in a} == {"label", "harm", "critique"}
    labels = [it for it in items if it["kind"] == "label"]
    share = lambda xs: sum(it["stratum"].endswith("/low") for it in xs) / len(xs)
    picked = [it for it in a if it["kind"] == "label"]
    assert share(picked) > share(labels)


def test_reviews_upsert_export_and_import_with_line_and_field_errors(tmp_path):
    db = AuditDB(tmp_path / "a.db")
    items = collect(fake_run(tmp_path))
    assert db.add_items(items) == len(items) and db.add_items(items) == 0  # idempotent
    it = items[0]
    other = next(c for c in it["choices"] if c != it["ai_label"])
    assert db.review(it["id"], "ann", other, "no")["verdict"] == "disagree"
    assert db.review(it["id"], "ann", it["ai_label"])["verdict"] == "agree"  # changed mind
    assert len(db.reviews()) == 1
    with pytest.raises(CaiError, match="not one of"):
        db.review(it["id"], "ann", "maybe")
    db.export(tmp_path / "out.jsonl")
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["item_id"] == it["id"] and row["verdict"] == "agree" and row["ai_label"] == it["ai_label"]

    other_db = AuditDB(tmp_path / "b.db")
    other_db.add_items(items)
    assert other_db.import_reviews(tmp_path / "out.jsonl") == 1
    assert other_db.reviews()[0]["label"] == it["ai_label"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"item_id": it["id"], "reviewer": "bo", "label": it["ai_label"]}) + "\n"
                   + json.dumps({"item_id": it["id"], "reviewer": "bo", "label": 3}) + "\n")
    with pytest.raises(CaiError, match=r"bad.jsonl:2: field 'label'"):
        other_db.import_reviews(bad)
    assert len(other_db.reviews()) == 1  # nothing from the bad file was written
    bad.write_text("{not json\n")
    with pytest.raises(CaiError, match=r"bad.jsonl:1: not valid JSON"):
        other_db.import_reviews(bad)
    bad.write_text(json.dumps({"item_id": "nope", "reviewer": "bo", "label": "A"}) + "\n")
    with pytest.raises(CaiError, match=r"bad.jsonl:1: field 'item_id'"):
        other_db.import_reviews(bad)
    wal = sqlite3.connect(tmp_path / "a.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert wal == "wal"


def test_kappa_on_constructed_cases():
    assert kappa([("A", "A"), ("B", "B")] * 5) == pytest.approx(1.0)
    # observed 0.5; expected 0.5 (both raters 50/50) → kappa 0
    assert kappa([("A", "A"), ("A", "B"), ("B", "A"), ("B", "B")]) == pytest.approx(0.0)
    # 2x2 table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5·0.6 + 0.5·0.4 = 0.5 → 0.4
    pairs = [("A", "A")] * 20 + [("A", "B")] * 5 + [("B", "A")] * 10 + [("B", "B")] * 15
    assert kappa(pairs) == pytest.approx(0.4)
    assert kappa([("A", "A")] * 3) is None and kappa([]) is None


def test_agreement_per_principle_and_drift_across_versions(tmp_path):
    db = AuditDB(tmp_path / "a.db")
    items = collect(fake_run(tmp_path))
    db.add_items(items)
    harm = [it for it in items if it["kind"] == "harm"]
    for i, it in enumerate(harm):  # the human agrees with the AI on 9 of 12 verdicts
        other = next(c for c in it["choices"] if c != it["ai_label"])
        db.review(it["id"], "ann", it["ai_label"] if i < 9 else other)
        db.review(it["id"], "bo", it["ai_label"])
    r = agreement(db)
    assert r["kind"]["harm"]["n"] == 24 and r["kind"]["harm"]["accuracy"] == pytest.approx(21 / 24)
    lo, hi = r["kind"]["harm"]["accuracy_interval"]
    assert lo < 21 / 24 < hi
    k = r["overall"]["all"]
    assert k["kappa"] is not None and k["kappa_interval"][0] <= k["kappa"] <= k["kappa_interval"][1]
    assert "HARM-03" in r["principle"] and "cyber" in r["category"]
    assert r["human_human"]["n"] == 12 and r["human_human"]["accuracy"] == pytest.approx(9 / 12)
    assert r["drift"] == []
    # Version 2 flips the AI's verdict on the first 3 harm items.
    db.add_ai_labels([{"item_id": it["id"], "constitution_hash": "h2", "constitution": "v2",
                       "label": next(c for c in it["choices"] if c != it["ai_label"]) if i < 3
                       else it["ai_label"]} for i, it in enumerate(harm)])
    d = agreement(db)["drift"][0]
    assert (d["a"], d["b"], d["items"], d["flips"]) == ("h1", "h2", 12, 3)
    assert d["flip_rate"] == pytest.approx(0.25)
    assert d["agreement_a"]["accuracy"] == pytest.approx(21 / 24)


def test_relabel_stores_labels_under_the_new_constitution_in_batches(tmp_path):
    db = AuditDB(tmp_path / "a.db")
    items = collect(fake_run(tmp_path))
    db.add_items(items)
    c = constitution.load()
    backend = ScriptedBackend()
    counts = relabel(db, backend, c)
    assert counts == {"label": 12, "harm": 12, "skipped": 12}
    # One score call per principle set of labels (all HARM-01 here) and one for the verdicts.
    assert [kind for kind, _ in backend.calls] == ["score", "score"]
    new = [r for r in db.ai_labels() if r["constitution_hash"] == c.hash]
    assert len(new) == 24 and all(0 <= r["p"] <= 1 for r in new)
    assert agreement(db)["drift"][0]["items"] == 24


# -- the web app ---------------------------------------------------------------------

def _served(tmp_path, n=12):
    db = AuditDB(tmp_path / "a.db")
    items = collect(fake_run(tmp_path, n))
    # The hostile items come first, so the browser test renders them.
    db.add_items(sorted(items, key=lambda it: (XSS not in it["responses"], it["id"])))
    return db, db.new_token("ann")


def _request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def test_writes_need_the_token_and_model_text_is_escaped(tmp_path):
    db, token = _served(tmp_path)
    item = db.items()[0]
    with Server(db.path) as s:
        form = {"item_id": item["id"], "action": "agree"}
        assert _request(s.url + "/review", form)[0] == 401
        assert _request(s.url + "/review", {**form, "token": "wrong"})[0] == 403
        # A cookie alone does not authorise a write (cross-site posts carry cookies).
        assert _request(s.url + "/review", form, {"Cookie": f"cai_audit={token}"})[0] == 401
        assert db.reviews() == []
        assert _request(s.url + "/")[0] == 401 and _request(s.url + "/?token=nope")[0] == 403
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(s.url + "/?token=" + token)
        assert e.value.code == 303 and f"cai_audit={token}" in e.value.headers["set-cookie"]
        assert "httponly" in e.value.headers["set-cookie"].lower()
        hostile = next(it for it in db.items() if XSS in it["responses"])
        status, page, headers = _request(s.url + "/item/" + hostile["id"], headers={"Cookie": f"cai_audit={token}"})
        assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
        assert XSS not in page and "&lt;script&gt;window.__pwned" in page
        assert "&lt;img src=x onerror=" in page
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(urllib.request.Request(s.url + "/review", urllib.parse.urlencode(
                {**form, "token": token}).encode()))
        assert e.value.code == 303 and e.value.headers["location"] == "/"  # on to the next item
        assert [(r["item_id"], r["reviewer"], r["verdict"]) for r in db.reviews()] == [(item["id"], "ann", "agree")]
        status, body, _ = _request(s.url + "/export.jsonl", headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and json.loads(body)["item_id"] == item["id"]
        assert _request(s.url + "/export.jsonl")[0] == 401


CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(CHROMEDRIVER is None and not os.environ.get("CAI_REQUIRE_CHROMIUM"),
                    reason="Debian's chromium-driver is not installed (.ci/run installs it and sets "
                    "CAI_REQUIRE_CHROMIUM=1, so CI fails rather than skips without it)")
def test_reviewer_goes_through_five_items_with_the_keyboard_in_chromium(tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    assert CHROMEDRIVER, "chromedriver not found on PATH"
    db, token = _served(tmp_path)
    order = [it for it in db.items()][:5]
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        with Server(db.path) as s:
            driver.get(f"{s.url}/?token={token}")

            def press(*keys, submits=True, then=lambda chain: chain):
                page = driver.find_element(By.TAG_NAME, "html")
                then(ActionChains(driver).send_keys(*keys)).perform()
                if submits:  # wait for the next page, loaded
                    # Mid-navigation Chromium may answer a query on the old page with a generic
                    # "node does not belong to the document" error rather than a stale-element
                    # one: poll through both until the old page is gone and the new one loaded.
                    wait = WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))
                    wait.until(EC.staleness_of(page))
                    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

            def on(item):
                assert driver.find_element(By.NAME, "item_id").get_attribute("value") == item["id"]
                # Model text (the XSS payloads among it) is shown, inert.
                assert driver.execute_script("return window.__pwned === undefined")
                assert driver.execute_script("return document.images.length") == 0

            on(order[0])
            assert XSS in driver.find_element(By.TAG_NAME, "main").text  # shown as text
            assert "0 of 36 reviewed" in driver.find_element(By.ID, "progress").text
            press("a")                                   # 1: agree
            on(order[1])
            press("d")                                   # 2: disagree
            on(order[2])
            press("2", "s")                              # 3: choose the second option, save
            on(order[3])
            press("n", "looks borderline", Keys.ESCAPE, submits=False)  # 4: a note, then agree
            press("a")
            on(order[4])
            press("n", "second thoughts",  # 5: a note, Ctrl+Enter saves
                  then=lambda c: c.key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL))
            assert "5 of 36 reviewed" in driver.find_element(By.ID, "progress").text
            assert driver.execute_script("return window.__pwned === undefined")
    finally:
        driver.quit()
    got = {r["item_id"]: r for r in db.reviews()}
    assert len(got) == 5 and {r["reviewer"] for r in got.values()} == {"ann"}
    other = lambda it: next(c for c in it["choices"] if c != it["ai_label"])
    assert got[order[0]["id"]]["label"] == order[0]["ai_label"] and got[order[0]["id"]]["verdict"] == "agree"
    assert got[order[1]["id"]]["label"] == other(order[1]) and got[order[1]["id"]]["verdict"] == "disagree"
    assert got[order[2]["id"]]["label"] == order[2]["choices"][1]
    assert got[order[3]["id"]]["note"] == "looks borderline" and got[order[3]["id"]]["verdict"] == "agree"
    assert got[order[4]["id"]]["note"] == "second thoughts"
    assert got[order[4]["id"]]["label"] == order[4]["ai_label"]  # the preselected AI choice


def test_audit_cli_sample_import_report(tmp_path):
    run = fake_run(tmp_path)
    db = tmp_path / "a.db"
    p = cai("audit", "sample", run, "--n", "10", "--db", db, "-o", tmp_path / "s.jsonl", check=True)
    assert "10 new items" in p.stdout
    items = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    _write(tmp_path / "h.jsonl", [{"item_id": it["id"], "reviewer": "ann", "label": it["ai_label"]}
                                  for it in items])
    assert "imported 10" in cai("audit", "import", tmp_path / "h.jsonl", "--db", db, check=True).stdout
    p = cai("audit", "report", "--db", db, "-o", tmp_path / "r.json", check=True)
    assert "10 of 10 items reviewed by ann" in p.stdout
    assert json.loads((tmp_path / "r.json").read_text())["overall"]["all"]["accuracy"] == 1.0
    p = cai("audit", "sample", run, "--kinds", "nope", "--db", db)
    assert p.returncode == 2 and "unknown kind 'nope'" in p.stderr and "Traceback" not in p.stderr
    p = cai("audit", "serve", "--db", tmp_path / "none.db", "-r", "ann")
    assert p.returncode == 2 and "no audit database" in p.stderr
    # import and export need the database a sample made; they do not make an empty one
    for args in (("import", tmp_path / "h.jsonl"), ("export", tmp_path / "x.jsonl")):
        p = cai("audit", *args, "--db", tmp_path / "none.db")
        assert p.returncode == 2 and "no audit database" in p.stderr, args
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "x.jsonl").exists()
    p = cai("audit", "export", tmp_path / "x.jsonl", "--db", db, check=True)
    assert "exported 10 reviews" in p.stdout and len((tmp_path / "x.jsonl").read_text().splitlines()) == 10


def test_eight_reviewers_writing_at_once_lose_nothing_and_double_nothing(tmp_path):
    """8 reviewers × 50 reviews posted at the same moment on loopback, then 8 × 50 changes of
    mind: exactly one review per (item, reviewer) with the last label, and no 5xx."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    db = AuditDB(tmp_path / "a.db")
    db.add_items(collect(fake_run(tmp_path, 40)))
    items = db.items()[:50]
    assert len(items) == 50
    tokens = {f"r{k}": db.new_token(f"r{k}") for k in range(8)}
    opener = urllib.request.build_opener(_NoRedirect)
    statuses: list[int] = []
    lock = threading.Lock()

    def post(url, form):
        req = urllib.request.Request(url + "/review", urllib.parse.urlencode(form).encode())
        try:
            opener.open(req, timeout=60)
            return 200
        except urllib.error.HTTPError as e:
            return e.code

    def reviewer(url, name, barrier, flip):
        barrier.wait(timeout=30)
        for it in items:
            other = next(c for c in it["choices"] if c != it["ai_label"])
            label = other if flip else it["ai_label"]
            code = post(url, {"item_id": it["id"], "action": "save", "label": label, "token": tokens[name]})
            with lock:
                statuses.append(code)

    with Server(db.path) as s:
        t0 = time.monotonic()
        for flip in (False, True):
            barrier = threading.Barrier(len(tokens))
            with ThreadPoolExecutor(len(tokens)) as pool:
                for f in [pool.submit(reviewer, s.url, name, barrier, flip) for name in tokens]:
                    f.result(timeout=300)
        seconds = time.monotonic() - t0
    assert len(statuses) == 800 and set(statuses) == {303}, Counter(statuses)
    rows = db.reviews()
    assert len(rows) == 400 and len({(r["item_id"], r["reviewer"]) for r in rows}) == 400
    assert all(r["verdict"] == "disagree" for r in rows)  # the second pass won everywhere
    print(f"800 concurrent review posts in {seconds:.1f} s")
