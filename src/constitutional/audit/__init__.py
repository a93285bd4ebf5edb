"""Human audit of AI judgments: sample them, review them in a browser, measure agreement.

``sample``    stratified, seeded samples of a run's critiques, preference labels and harm
              verdicts (low-confidence judgments oversampled)
``db``        the reviews database (SQLite, WAL): items, AI labels per constitution version,
              reviewers' tokens and their reviews; JSONL import and export
``app``       the review web app (FastAPI, server-rendered, no CDN, loopback by default)
``agreement`` AI–human agreement (accuracy and Cohen's kappa with intervals) per principle
              and category, and drift across constitution versions
"""
