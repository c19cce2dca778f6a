"""Command-line tools: ``nbsim`` (:func:`nbsim.cli.main.main`) and ``nbsim-compare``
(:func:`nbsim.cli.compare.main`)."""
