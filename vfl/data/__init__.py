"""A party's rows: tables, where they come from, IDs, and reading or writing them in chunks.

* :mod:`~vfl.data.table`: a party's checked table (``PartyTable``) from CSV, Parquet or a DataFrame;
* :mod:`~vfl.data.dataset` and :mod:`~vfl.data.sources`: a dataset as a service configures it (file or
  database table), opened once and read whole (training) or by ID (serving);
* :mod:`~vfl.data.ids`: how IDs are normalised, so both sides of a PSI compare the same text, and their
  coarse profiles;
* :mod:`~vfl.data.leakage`: a feature that gives the label away;
* :mod:`~vfl.data.formats`: files as Windows and Excel write them;
* :mod:`~vfl.data.chunks`: batch scoring's chunked input and resumable output.
"""
