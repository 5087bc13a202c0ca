//! A flattened device tree writer into a caller's buffer (no allocator):
//! the hypervisor describes each VM's machine with it. Our own because the
//! writers of crates.io (vm-fdt) need an allocator; reading uses the `fdt`
//! crate. Layout per the devicetree specification: header, an empty memory
//! reservation block, the structure block, the strings block.

const MAGIC: u32 = 0xd00d_feed;
const VERSION: u32 = 17;
const LAST_COMPATIBLE_VERSION: u32 = 16;
const HEADER_BYTES: usize = 40;
const RESERVATION_BYTES: usize = 16;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;
/// Room kept for the strings block (property names), at the buffer's end.
const STRINGS_ROOM: usize = 1024;

pub struct FdtWriter<'a> {
    buffer: &'a mut [u8],
    /// End of the structure block so far.
    len: usize,
    strings: [u8; STRINGS_ROOM],
    strings_len: usize,
    depth: usize,
    overflow: bool,
}

impl<'a> FdtWriter<'a> {
    pub fn new(buffer: &'a mut [u8]) -> FdtWriter<'a> {
        FdtWriter {
            buffer,
            len: HEADER_BYTES + RESERVATION_BYTES,
            strings: [0; STRINGS_ROOM],
            strings_len: 0,
            depth: 0,
            overflow: false,
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end > self.buffer.len() {
            self.overflow = true;
            return;
        }
        self.buffer[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    fn align(&mut self) {
        while !self.len.is_multiple_of(4) {
            self.bytes(&[0]);
        }
    }

    /// The offset of `name` in the strings block, adding it once.
    fn string(&mut self, name: &str) -> u32 {
        let table = &self.strings[..self.strings_len];
        let mut at = 0;
        while at < table.len() {
            let end = at + table[at..].iter().position(|&b| b == 0).unwrap_or(0);
            if &table[at..end] == name.as_bytes() {
                return at as u32;
            }
            at = end + 1;
        }
        let offset = self.strings_len;
        if offset + name.len() + 1 > STRINGS_ROOM {
            self.overflow = true;
            return 0;
        }
        self.strings[offset..offset + name.len()].copy_from_slice(name.as_bytes());
        self.strings_len += name.len() + 1;
        offset as u32
    }

    pub fn begin_node(&mut self, name: &str) {
        self.u32(BEGIN_NODE);
        self.bytes(name.as_bytes());
        self.bytes(&[0]);
        self.align();
        self.depth += 1;
    }

    pub fn end_node(&mut self) {
        self.u32(END_NODE);
        self.depth -= 1;
    }

    pub fn property(&mut self, name: &str, value: &[u8]) {
        let name = self.string(name);
        self.u32(PROP);
        self.u32(value.len() as u32);
        self.u32(name);
        self.bytes(value);
        self.align();
    }

    pub fn property_null(&mut self, name: &str) {
        self.property(name, &[]);
    }

    pub fn property_string(&mut self, name: &str, value: &str) {
        let name_offset = self.string(name);
        self.u32(PROP);
        self.u32(value.len() as u32 + 1);
        self.u32(name_offset);
        self.bytes(value.as_bytes());
        self.bytes(&[0]);
        self.align();
    }

    pub fn property_u32(&mut self, name: &str, value: u32) {
        self.property(name, &value.to_be_bytes());
    }

    /// Up to eight 32-bit cells (an `interrupts-extended` list).
    pub fn property_u32s(&mut self, name: &str, values: &[u32]) {
        let mut bytes = [0u8; 32];
        let n = values.len().min(8);
        for (i, v) in values[..n].iter().enumerate() {
            bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
        }
        self.property(name, &bytes[..4 * n]);
    }

    /// Up to four 64-bit cells (a `reg` of two address/size pairs).
    pub fn property_u64s(&mut self, name: &str, values: &[u64]) {
        let mut bytes = [0u8; 32];
        let n = values.len().min(4);
        for (i, v) in values[..n].iter().enumerate() {
            bytes[8 * i..8 * i + 8].copy_from_slice(&v.to_be_bytes());
        }
        self.property(name, &bytes[..8 * n]);
    }

    /// Ends the tree; its size, or `None` if it did not fit the buffer.
    pub fn finish(mut self) -> Option<usize> {
        if self.depth != 0 {
            return None;
        }
        self.u32(END);
        let structure_start = HEADER_BYTES + RESERVATION_BYTES;
        let structure_size = self.len - structure_start;
        let strings_start = self.len;
        let strings = self.strings;
        self.bytes(&strings[..self.strings_len]);
        if self.overflow {
            return None;
        }
        let total = self.len;
        let header = [
            MAGIC,
            total as u32,
            structure_start as u32,
            strings_start as u32,
            HEADER_BYTES as u32,
            VERSION,
            LAST_COMPATIBLE_VERSION,
            0, // boot cpu
            self.strings_len as u32,
            structure_size as u32,
        ];
        for (i, word) in header.iter().enumerate() {
            self.buffer[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
        }
        // The memory reservation block: one terminating empty entry.
        self.buffer[HEADER_BYTES..structure_start].fill(0);
        Some(total)
    }
}
