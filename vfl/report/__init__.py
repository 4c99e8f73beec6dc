"""Figures and the HTML job report (needs the ``report`` extra: ``pip install vfl[report]``).

    summary.py          the summary a page is made from: a service job's record, or a simulation
    figures.py          its figures as PNG bytes (plots.py draws them with matplotlib)
    html.py             render(): the page, from the sections in model_sections.py and job_sections.py
    markup.py           what those sections are built from: tables, exact-valued cells, figures, wording
    contributions.py    each feature party's contribution and the ledger, on the page and in the terminal
    fmt.py              numbers as people read them
    progress.py         the progress line of vfl demo, simulate and jobs watch
"""
