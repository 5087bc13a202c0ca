//! The machine's PLIC, as the hypervisor drives it for the devices it
//! passes through: each one's source enabled (priority 1) in the boot
//! hart's S-mode context, claimed when it interrupts and completed only
//! when the owning VM completes it in its virtual PLIC, so a level-
//! triggered device (virtio) does not interrupt again before its driver
//! has acknowledged it.

const PRIORITY: usize = 0x0;
const ENABLE: usize = 0x2000;
const ENABLE_STRIDE: usize = 0x80;
const CONTEXT: usize = 0x20_0000;
const CONTEXT_STRIDE: usize = 0x1000;
const CLAIM: usize = 4;

#[derive(Clone, Copy)]
pub struct Plic {
    base: usize,
    context: usize,
}

impl Plic {
    /// The PLIC at `base`, used through `context`, with every source off
    /// there and a threshold of 0.
    pub fn new(base: usize, context: usize) -> Plic {
        let plic = Plic { base, context };
        for word in 0..crate::vplic::SOURCES.div_ceil(32) {
            plic.write(ENABLE + ENABLE_STRIDE * context + 4 * word, 0);
        }
        plic.write(CONTEXT + CONTEXT_STRIDE * context, 0);
        plic
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: a register of the machine's PLIC, which only the
        // hypervisor maps (it runs untranslated; no VM has it in its G-stage).
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    /// Lets `source` interrupt the hypervisor's context.
    pub fn enable(&self, source: usize) {
        self.write(PRIORITY + 4 * source, 1);
        let word = ENABLE + ENABLE_STRIDE * self.context + 4 * (source / 32);
        self.write(word, self.read(word) | 1 << (source % 32));
    }

    /// The highest pending source, now in service (0: none).
    pub fn claim(&self) -> usize {
        self.read(CONTEXT + CONTEXT_STRIDE * self.context + CLAIM) as usize
    }

    /// `source` may interrupt again.
    pub fn complete(&self, source: usize) {
        self.write(
            CONTEXT + CONTEXT_STRIDE * self.context + CLAIM,
            source as u32,
        );
    }
}
