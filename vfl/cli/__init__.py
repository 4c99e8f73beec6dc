"""The ``vfl`` command (:func:`vfl.cli.main.main`)."""
