"""Twin of rig.core.cy.planted (the native-coverage canary): same branch, in Python."""


def deep_branch(data) -> bool:
    data = bytes(data)
    return len(data) >= 4 and data[:4] == b"GMEM"
