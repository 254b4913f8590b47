"""Studies: fixed experiments built on sweeps and the analyses, with the documents they write (`findings`:
the paper's claims re-measured on a small budget, `mixkd findings`). The toolkit never imports them."""
