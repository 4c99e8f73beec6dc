"""``vfl demo``: demo data, local services as child processes, the joint job and its summary.

* :mod:`~vfl.demo.data`: the synthetic bank, shop and telco tables;
* :mod:`~vfl.demo.services`: config files, certificates, three (or k + 2) local services and the job;
* :mod:`~vfl.demo.lending`: ``vfl demo --lending``, three lenders and a querying bank.
"""
