//! What this hart implements, in one place: `misa` and the device tree's
//! ISA description (`riscv,isa`, `riscv,isa-base`, `riscv,isa-extensions`)
//! are derived from the same list, so they cannot disagree.

/// The base ISA, as `riscv,isa-base` names it.
pub const ISA_BASE: &str = "rv64i";

/// Every extension the hart implements, in the canonical order the ISA
/// string uses (single letters first, then multi-letter ones), with the
/// device-tree binding's names. `s` and `u` are privilege modes, not listed.
pub const ISA_EXTENSIONS: &[&str] = &[
    "i", "m", "a", "f", "d", "c", "h", "zicntr", "zicsr", "zifencei", "sstc",
];

/// misa.MXL for RV64.
const MXL_64: u64 = 2 << 62;

/// Bit of `misa` for a single-letter extension or mode.
const fn misa_bit(letter: u8) -> u64 {
    1 << (letter - b'a')
}

/// `misa`: RV64, the single-letter extensions above, S- and U-mode.
pub const MISA: u64 = {
    let mut value = MXL_64 | misa_bit(b's') | misa_bit(b'u');
    let mut i = 0;
    while i < ISA_EXTENSIONS.len() {
        let name = ISA_EXTENSIONS[i].as_bytes();
        if name.len() == 1 {
            value |= misa_bit(name[0]);
        }
        i += 1;
    }
    value
};

/// The legacy `riscv,isa` string: `rv64imafdc_zicntr_zicsr_…`.
pub fn isa_string() -> String {
    let mut s = String::from("rv64");
    for (i, ext) in ISA_EXTENSIONS.iter().enumerate() {
        if ext.len() > 1 && i > 0 {
            s.push('_');
        }
        s.push_str(ext);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misa_is_rv64imafdch_with_s_and_u() {
        let letters: String = (b'a'..=b'z')
            .filter(|&l| MISA & misa_bit(l) != 0)
            .map(char::from)
            .collect();
        assert_eq!(letters, "acdfhimsu");
        assert_eq!(MISA >> 62, 2);
    }

    #[test]
    fn isa_string_lists_every_extension() {
        assert_eq!(isa_string(), "rv64imafdch_zicntr_zicsr_zifencei_sstc");
    }
}
