"""An evaluation run: the prompts, the judge's independence, the scoring context, the loop over
``eval.grid``'s settings, the console table, a folder scored as it is, paired settings and the
command (``python -m mjexp.eval``; the end of ``python -m mjexp.train`` calls :func:`evaluate_grid`)."""
