"""vLLM launch, API-contract and output-parity checks, load generation.

Never imports `migrate`, `typer` or `rich`.
"""
