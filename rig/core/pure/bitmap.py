"""Word-array bitmap with QEMU's helper names (include/qemu/bitmap.h, util/bitops.c).

Pure-Python twin of ``rig.core.cy.bitmap``.  Bits live in 64-bit words, bit ``nr`` is bit
``nr % 64`` of word ``nr // 64``; sizes are Python ints (never truncated to 32 bits).
"""

from __future__ import annotations

BITS_PER_LONG = 64
_ALL = (1 << BITS_PER_LONG) - 1


def BITS_TO_LONGS(nbits: int) -> int:
    return (nbits + BITS_PER_LONG - 1) // BITS_PER_LONG


def _lowest_set(word: int) -> int:
    return (word & -word).bit_length() - 1


class Bitmap:
    """A fixed-size bitmap of ``nbits`` bits, all clear at creation."""

    __slots__ = ("nbits", "_words")

    def __init__(self, nbits: int):
        if nbits < 0:
            raise ValueError("nbits must be >= 0")
        self.nbits = nbits
        self._words = [0] * BITS_TO_LONGS(nbits)

    # -- single bits ---------------------------------------------------------------------
    def test_bit(self, nr: int) -> bool:
        self._check(nr)
        return bool((self._words[nr >> 6] >> (nr & 63)) & 1)

    def set_bit(self, nr: int) -> None:
        self._check(nr)
        self._words[nr >> 6] |= 1 << (nr & 63)

    def clear_bit(self, nr: int) -> None:
        self._check(nr)
        self._words[nr >> 6] &= ~(1 << (nr & 63)) & _ALL

    # -- ranges --------------------------------------------------------------------------
    def bitmap_set(self, start: int, nr: int) -> None:
        """Set bits ``[start, start+nr)``, a word at a time."""
        self._check_range(start, nr)
        self._fill(start, nr, True)

    def bitmap_clear(self, start: int, nr: int) -> None:
        """Clear bits ``[start, start+nr)``, a word at a time."""
        self._check_range(start, nr)
        self._fill(start, nr, False)

    def _fill(self, start: int, nr: int, value: bool) -> None:
        words = self._words
        end = start + nr
        while start < end:
            idx = start >> 6
            lo = start & 63
            hi = min(64, lo + (end - start))
            mask = (_ALL >> (64 - (hi - lo))) << lo
            if value:
                words[idx] |= mask
            else:
                words[idx] &= ~mask & _ALL
            start += hi - lo

    def find_next_bit(self, size: int, offset: int) -> int:
        """Index of the first set bit in ``[offset, size)``, or ``size`` if there is none."""
        return self._find(size, offset, 0)

    def find_next_zero_bit(self, size: int, offset: int) -> int:
        """Index of the first clear bit in ``[offset, size)``, or ``size`` if there is none."""
        return self._find(size, offset, _ALL)

    def _find(self, size: int, offset: int, invert: int) -> int:
        size = min(size, self.nbits)
        if offset >= size:
            return size
        words = self._words
        idx = offset >> 6
        word = (words[idx] ^ invert) & (_ALL << (offset & 63)) & _ALL
        last_idx = (size - 1) >> 6
        while True:
            if word:
                found = (idx << 6) + _lowest_set(word)
                return found if found < size else size
            idx += 1
            if idx > last_idx:
                return size
            word = words[idx] ^ invert

    def count(self) -> int:
        """bitmap_count_one(): the number of set bits."""
        return sum(bin(w).count("1") for w in self._words)

    # -- whole-bitmap helpers (tests, differential checks) -------------------------------
    def copy(self) -> "Bitmap":
        other = Bitmap(self.nbits)
        other._words = list(self._words)
        return other

    def to_bytes(self) -> bytes:
        """Little-endian word dump; equal bitmaps give equal bytes on both backends."""
        return b"".join(w.to_bytes(8, "little") for w in self._words)

    def restore(self, data: bytes) -> None:
        """Load a ``to_bytes()`` dump of a bitmap of the same size."""
        if len(data) != 8 * len(self._words):
            raise ValueError("bitmap dump has the wrong size")
        self._words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]

    def set_bits(self) -> list[int]:
        """Every set bit, ascending (slow path for tests and reports)."""
        out = []
        nr = self.find_next_bit(self.nbits, 0)
        while nr < self.nbits:
            out.append(nr)
            nr = self.find_next_bit(self.nbits, nr + 1)
        return out

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "to_bytes") or not hasattr(other, "nbits"):
            return NotImplemented
        return self.nbits == other.nbits and self.to_bytes() == other.to_bytes()

    __hash__ = None  # mutable

    def __len__(self) -> int:
        return self.nbits

    def __repr__(self) -> str:
        return f"Bitmap(nbits={self.nbits}, set={self.count()})"

    def _check(self, nr: int) -> None:
        if not 0 <= nr < self.nbits:
            raise IndexError(f"bit {nr} out of range 0..{self.nbits}")

    def _check_range(self, start: int, nr: int) -> None:
        if start < 0 or nr < 0 or start + nr > self.nbits:
            raise IndexError(f"bits [{start}, {start + nr}) out of range 0..{self.nbits}")
