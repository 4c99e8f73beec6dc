"""Figures and the HTML job report (needs the ``report`` extra: ``pip install vfl[report]``)."""
