//! Loads and stores of every width, aligned or not, at the RISC-V board's
//! devices (CLINT, PLIC, UART, test device, virtio-mmio slots, PATA).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riscv_virt::fuzzing::platform_accesses(data));
