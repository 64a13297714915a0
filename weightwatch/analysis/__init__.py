"""After training: load many logged runs, group them, report, and classify them.

Needs the ``analysis`` extra (scipy, scikit-learn, matplotlib, rich, tqdm).
"""
