"""The data contract (docs/spec.md §2, §3, §7) in one place: what the tables hold and what a row may be.

`tables`: column contracts, DDL, partitioning and unique keys; `values`: the value rules;
`models`: the pandera models and row rules; `validation`: checking a DataFrame against them. The
lowest layer of the package: it imports nothing else of it.
"""
