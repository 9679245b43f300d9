"""The data contract (docs/spec.md §2, §3, §7) in one place: what the tables hold and what a row may be.

`tables`: column contracts, DDL, partitioning and unique keys; `values`: the value rules; `models`:
the pandera models and row rules; `validation`: counting the rules over a DataFrame; `conform`: a
frame from outside (an import) as content of a table. The lowest layer of the package: it imports
nothing else of it.
"""
