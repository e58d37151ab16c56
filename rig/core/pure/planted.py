"""Twin of rig.core.cy.planted (the native-coverage canary): same branch, in Python."""


def deep_branch(data) -> bool:
    return bytes(data[:8]) == b"GMEMRIG!"
