"""evaluation/elo.py: Bradley–Terry strengths and Elo with intervals."""



from constitutional.evaluation.elo import ELO, elo, fit_strengths



def test_elo_recovers_an_ordering_and_anchors_the_first_model():
    # model 2 beats 1 beats 0, each 75% of the time
    comps = [(1, 0, 0.75)] * 20 + [(2, 1, 0.75)] * 20 + [(2, 0, 0.9)] * 20
    s = fit_strengths(3, comps)
    assert s[0] == 0 and 0 < s[1] < s[2]
    result = elo(["a", "b", "c"], comps, bootstrap=50)
    assert result["a"]["elo"] == 0 and result["c"]["elo"] > result["b"]["elo"] > 0
    lo, hi = result["c"]["ci95"]
    assert lo <= result["c"]["elo"] <= hi
    # one 75% matchup is ~ ln 3 strength apart: about 191 Elo
    alone = fit_strengths(2, [(1, 0, 0.75)] * 40, l2=0)
    assert abs(ELO * alone[1] - 190.8) < 5


