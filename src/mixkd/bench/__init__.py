"""Benchmarks of the toolkit (`mixkd bench`): `step` times training steps, epochs, mixings and methods;
`cohort` times cohorts against solo runs. The toolkit never imports them."""
