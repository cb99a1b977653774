"""Flask's tutorial app, "Flaskr": templates and stylesheet (BSD-3-Clause, LICENSE.txt), served
by a small app of this test suite (:mod:`.app`)."""
