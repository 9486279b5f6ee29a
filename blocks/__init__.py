"""Prefect blocks of colabflow: settings and credentials only, never workflow logic.

Local jobs need none. Remote storage and callback blocks are registered from here with
`prefect block register -m blocks` once they exist.
"""
