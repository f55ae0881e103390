"""The 12 BP4D action units, in the order every array and table of the project uses."""

AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
AU_COLUMNS: tuple[str, ...] = tuple(f"AU{a}" for a in AUS)
N_AUS = len(AUS)

# FACS names, for figures and reports.
AU_NAMES: dict[int, str] = {
    1: "Inner brow raiser",
    2: "Outer brow raiser",
    4: "Brow lowerer",
    6: "Cheek raiser",
    7: "Lid tightener",
    10: "Upper lip raiser",
    12: "Lip corner puller",
    14: "Dimpler",
    15: "Lip corner depressor",
    17: "Chin raiser",
    23: "Lip tightener",
    24: "Lip pressor",
}

# Label values inside the project (BP4D codes 9 for "not coded"; we store -1).
PRESENT, ABSENT, UNKNOWN = 1, 0, -1


def au_index(au: int) -> int:
    """Position of AU `au` (e.g. 12) in AUS; a clear error for AUs outside BP4D's 12."""
    try:
        return AUS.index(int(au))
    except ValueError:
        raise ValueError(f"AU{au} is not one of BP4D's 12 AUs {AUS}") from None
