//! Fuzz body for the decoder (`fuzz/fuzz_targets/decoder.rs`; seeded
//! pseudo-random words in the unit tests): every 32-bit window of the
//! input decodes without a panic, with the length its low parcel gives; a
//! compressed instruction depends on its 16 bits only; an illegal one
//! carries exactly the bits that are its trap value.

use crate::{decode, decode_compressed, decode_full, instruction_length, Instruction};

/// Fuzz body: see the module documentation. Panics when a property fails.
pub fn decode_words(data: &[u8]) {
    for window in data.windows(4) {
        check(u32::from_le_bytes([
            window[0], window[1], window[2], window[3],
        ]));
    }
}

fn check(raw: u32) {
    let (instruction, length) = decode(raw);
    assert_eq!(length, instruction_length(raw as u16), "{raw:#010x}");
    let bits = if length == 2 {
        let low = raw as u16;
        assert_eq!(instruction, decode_compressed(low), "{raw:#010x}");
        assert_eq!(decode(low as u32), (instruction, 2), "{raw:#010x}");
        low as u32
    } else {
        assert_eq!(instruction, decode_full(raw), "{raw:#010x}");
        raw
    };
    if let Instruction::Illegal(trap_value) = instruction {
        assert_eq!(trap_value, bits, "illegal {raw:#010x} reports other bits");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pseudo_random_words_decode_consistently() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut bytes = [0u8; 4096];
        for _ in 0..256 {
            for b in bytes.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = (state >> 32) as u8;
            }
            super::decode_words(&bytes);
        }
    }
}
